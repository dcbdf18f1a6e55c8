"""Train the small BERT that ships as the default fill-mask model (src/lmlab/resources/bert-small).

A 4-layer, 128-wide masked LM with a 6,000-piece WordPiece vocabulary, trained with lmlab's own
trainer on the English text available offline: Penn Treebank (all three files, Wall Street
Journal news) then WikiText-2's valid and test files (Wikipedia; its train file is not in
../shared/data/wikitext-2, see SOURCE.md), about 1.4M words; the last 5% of the text (the end
of WikiText-2 test) is held out for validation. Markup is undone first: `<unk>` (a word outside
the corpus vocabulary) is dropped in both, as is PTB's `N` (every number), since the model would
otherwise learn them as the likeliest "words"; WikiText's ` @-@ `, ` @,@ `, ` @.@ ` become `-`,
`,`, `.`. The weights are stored as float16 (about 3 MB); the model computes in float32 once
loaded.

Reproduce it exactly (fixed seed, fixed steps, two threads):

    OMP_NUM_THREADS=2 python scripts/train_fill_mask_model.py

Options: --steps N (default 8000), --out FOLDER (default: the package's resources folder).
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
from lmlab.runs import RUN_FILE
from lmlab.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
CORPUS = ("ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt",
          "wikitext-2/valid.txt", "wikitext-2/test.txt")  # fmt: skip
DEFAULT_OUT = REPO / "src" / "lmlab" / "resources" / "bert-small"
MODEL = dict(context=64, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
MARKUP = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}
DROPPED = ("<unk>", "N")  # whole words


def clean(text: str) -> str:
    """PTB's or WikiText's tokenized text with its markup undone (see the module docstring)."""
    for markup, plain in MARKUP.items():
        text = text.replace(markup, plain)
    lines = (" ".join(w for w in line.split(" ") if w not in DROPPED) for line in text.split("\n"))
    return "\n".join(lines)


KEEP = ("config.json", RUN_FILE, "tokenizer.json", "tokenizer_config.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    config = TrainConfig(
        steps=args.steps, batch_size=64, lr=1e-3, warmup=500, eval_every=500, seed=0
    )
    with tempfile.TemporaryDirectory(prefix="bert-small-") as tmp:
        run = Path(tmp) / "run"
        corpus = [Path(tmp) / name.replace("/", "-") for name in CORPUS]
        for name, path in zip(CORPUS, corpus, strict=True):
            path.write_text(clean((DATA / name).read_text(encoding="utf-8")))
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
            meta = json.loads((folder / RUN_FILE).read_text())
            meta["train"].update(corpus=["../shared/data/" + name for name in CORPUS],
                                 cleaned=MARKUP, dropped=DROPPED)  # fmt: skip
            meta["train"]["result"] = {
                "steps": result.steps,
                "valid_loss": result.valid_loss,
                "valid_perplexity": result.valid_perplexity,
            }
            atomic_write_text(folder / RUN_FILE, json.dumps(meta, indent=2) + "\n")
    print(f"validation perplexity (masked tokens): {result.valid_perplexity:.2f}")
    mlm = load_masked_lm(args.out)
    print("This is a simple [MASK]. ->", mlm.fill_mask("This is a simple [MASK].", top_k=5))


if __name__ == "__main__":
    main()
