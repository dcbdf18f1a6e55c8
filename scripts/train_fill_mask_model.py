"""Train the small BERT that ships as the default fill-mask model (src/lmlab/resources/bert-small).

A 4-layer, 128-wide masked LM with a 6,000-piece WordPiece vocabulary, trained with lmlab's own
trainer on WikiText-2. Only WikiText-2's valid and test files are available offline
(../shared/data/wikitext-2/SOURCE.md), so it trains on both and validates on the last 5% of
the text. WikiText's markup is undone first: `<unk>` (a word outside its vocabulary) is dropped,
since the BERT pre-tokenizer would split it into `<`, `unk`, `>` and make those the likeliest
"words"; ` @-@ `, ` @,@ `, ` @.@ ` become `-`, `,`, `.`.
The weights are stored as float16 (about 3 MB); the model computes in float32 once loaded.

Reproduce it exactly (fixed seed, fixed steps; one thread per process, as on a busy CPU one
is faster than two):

    OMP_NUM_THREADS=1 python scripts/train_fill_mask_model.py

Options: --steps N (default 1500), --out FOLDER (default: the package's resources folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lmlab.home import atomic_dir, atomic_write_text
from lmlab.lm.neural.run import load_masked_lm
from lmlab.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "wikitext-2"
DEFAULT_OUT = REPO / "src" / "lmlab" / "resources" / "bert-small"
MODEL = dict(context=64, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
MARKUP = {" <unk>": "", " @-@ ": "-", " @,@ ": ",", " @.@ ": "."}


def clean(text: str) -> str:
    """WikiText's tokenized text with its markup undone (see the module docstring)."""
    for markup, plain in MARKUP.items():
        text = text.replace(markup, plain)
    return text


KEEP = ("config.json", "lmlab.json", "tokenizer.json", "tokenizer_config.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    config = TrainConfig(
        steps=args.steps, batch_size=32, lr=2e-3, warmup=100, eval_every=250, seed=0
    )
    with tempfile.TemporaryDirectory(prefix="bert-small-") as tmp:
        run = Path(tmp) / "run"
        corpus = [Path(tmp) / name for name in ("test.txt", "valid.txt")]
        for path in corpus:
            path.write_text(clean((DATA / path.name).read_text(encoding="utf-8")))
        result = train(
            "bert",
            corpus,
            run,
            tokenizer="wordpiece",
            vocab_size=6000,
            valid_fraction=0.05,
            model_options=MODEL,
            config=config,
        )
        with atomic_dir(args.out) as folder:
            for name in KEEP:
                shutil.copy(run / name, folder / name)
            # float16 halves the file; load_state_dict casts back to the model's float32.
            weights = load_file(run / "model.safetensors")
            half = {k: v.to(torch.float16) for k, v in weights.items()}
            save_file(half, folder / "model.safetensors")
            # Record the data as paths relative to the repository, not this machine's.
            meta = json.loads((folder / "lmlab.json").read_text())
            wikitext = "../shared/data/wikitext-2/"
            meta["train"].update(corpus=[wikitext + "test.txt", wikitext + "valid.txt"],
                                 cleaned=MARKUP)  # fmt: skip
            meta["train"]["result"] = {
                "steps": result.steps,
                "valid_loss": result.valid_loss,
                "valid_perplexity": result.valid_perplexity,
            }
            atomic_write_text(folder / "lmlab.json", json.dumps(meta, indent=2) + "\n")
    print(f"validation perplexity (masked tokens): {result.valid_perplexity:.2f}")
    mlm = load_masked_lm(args.out)
    print("This is a simple [MASK]. ->", mlm.fill_mask("This is a simple [MASK].", top_k=5))


if __name__ == "__main__":
    main()
