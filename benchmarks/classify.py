"""SST-2 sentiment (train -> dev) for every classification method: one table.

Columns: accuracy and macro-F1 on the 872 dev sentences, and training seconds. The probes
(logit, lasso, mlp) share one encoding of the texts, done first and timed on its own line, so
their seconds are the heads' alone. Next to them: the issue's goal for logit on the bundled
MiniLM (0.80) and the published dev accuracy of the lecture's default pipeline model,
distilbert-base-uncased-finetuned-sst-2-english (0.913, its Hugging Face model card).

Usage: python benchmarks/classify.py [--methods logit lasso mlp] [--limit-train N]
       [--encoder all-minilm-l6-v2] [--max-minutes 30]
(default: every method in lmlab.classify.method.METHODS, all 67,349 training sentences;
finetune and lora train for at most --max-minutes each, the issue's budget; prompting methods
read the labels 0 / 1 as the words negative / positive).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lmlab.classify.compare import compare, subsample
from lmlab.classify.data import read_labelled
from lmlab.classify.method import METHODS
from lmlab.classify.probes import encode_texts, load_probe_encoder
from lmlab.cli.classify_commands import print_table

SST2 = Path(__file__).parents[1] / ".." / "shared" / "data" / "sst2"
GOAL_LOGIT = 0.80  # issue 7: logit on the bundled MiniLM
PROBES = {"logit", "lasso", "mlp"}  # methods that read the shared encoder's vectors
DISTILBERT_SST2 = 0.913  # distilbert-base-uncased-finetuned-sst-2-english, dev accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--encoder", default="all-minilm-l6-v2")
    parser.add_argument("--max-minutes", type=float, default=30.0)
    args = parser.parse_args()

    train = read_labelled(SST2 / "train_full.tsv", "sentence", "label")
    dev = read_labelled(SST2 / "dev.tsv", "sentence", "label")
    train_xy = subsample(train.texts, train.labels, args.limit_train)
    print(f"SST-2: {len(train_xy[0])} training sentences, {len(dev.texts)} dev sentences")

    if set(args.methods) & PROBES:  # encode once, timed apart from the probes' heads
        encoder = load_probe_encoder(args.encoder)
        start = time.perf_counter()
        for texts in (train_xy[0], dev.texts):
            encode_texts(encoder, texts, progress=True)  # remembered for the probes below
        seconds = time.perf_counter() - start
        n = len(train_xy[0]) + len(dev.texts)
        print(f"encoding with {encoder.name}: {seconds:.0f} s ({n / seconds:.0f} sentences/s)\n")

    options = {
        "encoder": args.encoder,
        "max_minutes": args.max_minutes,
        "verbalizers": {"0": "negative", "1": "positive"},
    }
    rows = compare(train_xy, (dev.texts, dev.labels), args.methods, options=options)
    print()
    print(print_table(rows))
    for r in rows:
        if r.method == "logit":
            verdict = "meets" if r.accuracy >= GOAL_LOGIT else "misses"
            print(f"\nlogit {r.accuracy:.4f} {verdict} the goal {GOAL_LOGIT:.2f}; ", end="")
            print(f"distilbert-sst2 (published) {DISTILBERT_SST2:.3f}: ratio ", end="")
            print(f"{r.accuracy / DISTILBERT_SST2:.3f}")


if __name__ == "__main__":
    main()
