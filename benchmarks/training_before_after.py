"""The training loop's speed against an earlier checkout of lmlab, side by side in one run.

Two workloads, each run from both source trees in turn (`--repeats` pairs; the medians are
compared, since a shared VM's speed drifts over minutes):
- Tiny Shakespeare, character GPT in nanoGPT's CPU configuration (see train_shakespeare.py),
  `--steps` optimizer steps through `lmlab train gpt`: the tokens/s the trainer reports;
- SST-2, the `finetune` classifier method (MiniLM + head, all layers) on `--sst2-limit` training
  sentences for one epoch: examples/s of the whole fit.

Usage: python benchmarks/training_before_after.py --before /path/to/old/checkout
       [--steps 300] [--sst2-limit 1024] [--repeats 3]
A ratio is after / before: >= 1 means the current tree is at least as fast.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DATA = HERE / ".." / "shared" / "data"

FINETUNE = """
import json, sys, time
import numpy as np
from lmlab.classify.compare import subsample
from lmlab.classify.data import read_labelled
from lmlab.classify.method import method_class
table = read_labelled(sys.argv[1], "sentence", "label")
texts, labels = subsample(table.texts, table.labels, int(sys.argv[2]))
y = np.array([int(label) for label in labels])
method = method_class("finetune")(epochs=1)
start = time.perf_counter()
method.fit(texts, y, ["negative", "positive"])
print(json.dumps({"seconds": time.perf_counter() - start, "examples": len(texts)}))
"""


def run(tree: Path, command: list[str]) -> str:
    """Run `command` with `tree`'s source first on the path; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"failed in {tree}: {' '.join(command[:4])} ...\n{done.stderr[-2000:]}")
    return done.stdout


def shakespeare(tree: Path, steps: int) -> float:
    """Tokens per second of `lmlab train gpt` (nanoGPT's CPU configuration)."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "-m", "lmlab", "train", "gpt",
            str(DATA / "tinyshakespeare" / "input.txt"), "--out", str(Path(tmp) / "run"),
            "--tokenizer", "char", "--valid-fraction", "0.1", "--layers", "4", "--heads", "4",
            "--dim", "128", "--context", "64", "--batch-size", "12", "--steps", str(steps),
            "--lr", "1e-3", "--dropout", "0", "--eval-every", "250", "--json",
        ]  # fmt: skip
        return json.loads(run(tree, command))["tokens_per_second"]


def finetune(tree: Path, limit: int) -> float:
    """Examples per second of one epoch of the finetune method's fit on SST-2."""
    path = str(DATA / "sst2" / "train_full.tsv")
    out = json.loads(run(tree, [sys.executable, "-c", FINETUNE, path, str(limit)]))
    return out["examples"] / out["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the earlier checkout")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sst2-limit", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    workloads = {
        "shakespeare tokens/s": lambda tree: shakespeare(tree, args.steps),
        "sst2 finetune examples/s": lambda tree: finetune(tree, args.sst2_limit),
    }
    rows: dict[str, dict[str, list[float]]] = {}
    start = time.perf_counter()
    for name, work in workloads.items():
        rows[name] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for side, tree in (("before", args.before.resolve()), ("after", HERE)):
                rows[name][side].append(work(tree))
    print(f"{'workload':26} {'before (median)':>16} {'after (median)':>15} {'ratio':>6}  runs")
    for name, sides in rows.items():
        before, after = statistics.median(sides["before"]), statistics.median(sides["after"])
        runs = "; ".join(
            f"{b:,.0f}/{a:,.0f}" for b, a in zip(sides["before"], sides["after"], strict=True)
        )
        print(f"{name:26} {before:16,.1f} {after:15,.1f} {after / before:6.3f}  {runs}")
    print(f"({time.perf_counter() - start:.0f} s; goal: every ratio >= 0.98)")


if __name__ == "__main__":
    main()
