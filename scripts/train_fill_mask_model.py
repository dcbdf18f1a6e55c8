"""Train the small BERT that ships as the default fill-mask model (src/lmlab/resources/bert-small).

A 2-layer, 96-wide masked LM with a 3,000-piece WordPiece vocabulary, trained with lmlab's own
trainer on WikiText-2. Only WikiText-2's valid and test files are available offline
(../shared/data/wikitext-2/SOURCE.md), so it trains on test.txt and validates on valid.txt.
The weights are stored as float16 (about 1 MB); the model computes in float32 once loaded.

Reproduce it exactly (fixed seed, fixed steps; about 20 minutes on 2 busy CPU cores, where one
thread per process is much faster than two):

    OMP_NUM_THREADS=1 nice -n 10 python scripts/train_fill_mask_model.py

Options: --steps N (default 300), --out FOLDER (default: the package's resources folder).
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
MODEL = dict(context=64, n_layer=2, n_head=2, n_embd=96, dropout=0.1)
KEEP = ("config.json", "lmlab.json", "tokenizer.json", "tokenizer_config.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    config = TrainConfig(
        steps=args.steps, batch_size=16, lr=2e-3, warmup=30, eval_every=100, seed=0
    )
    with tempfile.TemporaryDirectory(prefix="bert-small-") as tmp:
        run = Path(tmp) / "run"
        result = train(
            "bert",
            [DATA / "test.txt"],
            run,
            tokenizer="wordpiece",
            vocab_size=3000,
            valid=DATA / "valid.txt",
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
            meta["train"].update(corpus=["../shared/data/wikitext-2/test.txt"],
                                 valid="../shared/data/wikitext-2/valid.txt")  # fmt: skip
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
