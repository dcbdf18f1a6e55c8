"""Tiny Shakespeare, character level, nanoGPT's CPU configuration: lmlab against nanoGPT.

The configuration of nanoGPT's README for a CPU ("I only have a macbook"): 4 layers, 4 heads,
128-d, context 64, batch 12, 2000 iterations, lr 1e-3 (warm-up 100, cosine to 1e-4), no dropout;
validation every 250 steps on 20 batches; the last 10% of the text held out. We time the whole
`lmlab train gpt` command (start-up, tokenization, evaluations and the final pass over the whole
held-out 10% included) and report tokens/s and the final validation loss. Our `--dtype` is
lmlab's default, auto: matrix products in bfloat16 on a CPU with AVX512-BF16 or AMX, else
float32 (`--dtype float32` forces it; nanoGPT's train.py has no autocast on a CPU: float32).
The GPT has lmlab's default rotary positions, where nanoGPT learns a table of 64 position
vectors (`--positions learned` gives nanoGPT's model).

The peer: nanoGPT's `train.py` with the same configuration. Pass `--nanogpt DIR` (a nanoGPT
checkout whose data/shakespeare_char was prepared) to run it side by side; otherwise the figures
measured on this machine when the issue was written are used (106 s wall, val loss 1.886).

Usage: python benchmarks/train_shakespeare.py [--steps 2000] [--nanogpt DIR] [--dtype float32]
       [--positions learned] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"
NANOGPT_MEASURED = {"seconds": 106.0, "valid_loss": 1.886, "tokens_per_s": 2000 * 768 / 106.0}


def ours(steps: int, out: Path, dtype: str, positions: str) -> dict:
    command = [
        sys.executable, "-m", "lmlab", "train", "gpt", str(DATA), "--out", str(out),
        "--tokenizer", "char", "--valid-fraction", "0.1", "--layers", "4", "--heads", "4",
        "--dim", "128", "--context", "64", "--batch-size", "12", "--steps", str(steps),
        "--lr", "1e-3", "--dropout", "0", "--eval-every", "250", "--dtype", dtype, "--json",
        "--positions", positions,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"lmlab train failed: {done.stderr}")
    result = json.loads(done.stdout)
    return {"seconds": seconds, "valid_loss": result["valid_loss"],
            "tokens_per_s": result["tokens_per_second"]}  # fmt: skip


def nanogpt(steps: int, folder: Path) -> dict:
    command = [
        sys.executable, "train.py", "config/train_shakespeare_char.py", "--device=cpu",
        "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
        "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", f"--max_iters={steps}",
        f"--lr_decay_iters={steps}", "--dropout=0.0", "--always_save_checkpoint=False",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - start
    losses = re.findall(r"val loss ([0-9.]+)", done.stdout)
    if done.returncode or not losses:
        sys.exit(f"nanoGPT failed: {done.stderr[-2000:]}")
    return {"seconds": seconds, "valid_loss": float(losses[-1]),
            "tokens_per_s": steps * 12 * 64 / seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--nanogpt", type=Path, help="a prepared nanoGPT checkout")
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temp folder)")
    parser.add_argument("--dtype", default="auto", help="ours: auto, float32 or bfloat16")
    parser.add_argument("--positions", default="rope", help="ours: rope, learned, sinusoidal")
    parser.add_argument(
        "--repeats", type=int, default=1, help="run both this many times, in turn: the host's "
        "speed drifts by up to 1.5x over minutes here, so one pair of runs can mislead",
    )  # fmt: skip
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"missing {DATA}")
    rows = []  # (ours, the peer's) of each repeat, run one after the other
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            last = repeat == args.repeats - 1
            out = args.out if args.out and last else Path(tmp) / "run"
            mine = ours(args.steps, out, args.dtype, args.positions)
        peer = nanogpt(args.steps, args.nanogpt) if args.nanogpt else NANOGPT_MEASURED
        rows.append((mine, peer))
    source = "nanoGPT, run now" if args.nanogpt else "nanoGPT (the issue's figure)"
    print(f"{'':28} {'wall s':>8} {'tokens/s':>10} {'valid loss':>11}")
    for mine, peer in rows:
        for name, row in ((f"lmlab gpt, {args.dtype}, {args.positions}", mine), (source, peer)):
            print(f"{name:28.28} {row['seconds']:8.1f} {row['tokens_per_s']:10,.0f} "
                  f"{row['valid_loss']:11.4f}")  # fmt: skip
    ratios = sorted(peer["seconds"] / mine["seconds"] for mine, peer in rows)
    print(f"speed: {statistics.median(ratios):.2f}x nanoGPT's wall time, the median of "
          f"{len(ratios)} ({', '.join(f'{r:.2f}' for r in ratios)}) (goal >= 1.3x); "
          f"valid loss goal <= 1.88")  # fmt: skip


if __name__ == "__main__":
    main()
