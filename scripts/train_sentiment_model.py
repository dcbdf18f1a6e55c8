"""Train the default sentiment classifier shipped in src/lmlab/resources/sentiment-sst2/.

A multinomial logit (l2, C = 1) on the bundled all-minilm-l6-v2 vectors of every SST-2
training sentence (67,349, labels 0/1 renamed NEGATIVE/POSITIVE). Only the head is saved
(2 x 384 weights, a few KB), never the encoder. The fit is deterministic (lbfgs from zeros on
the same vectors), so running it again rewrites the same head.

Run from the repository root, with ../shared/data beside the checkout (a few minutes, most of
it encoding):

    python scripts/train_sentiment_model.py [--data ../shared/data/sst2] [--out FOLDER]

It prints the SST-2 dev accuracy of the result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmlab.classify.classifier import TextClassifier
from lmlab.classify.data import read_labelled

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "sst2")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "lmlab" / "resources" / "sentiment-sst2"
    )
    args = parser.parse_args()
    train = read_labelled(args.data / "train_full.tsv", "sentence", "label")
    dev = read_labelled(args.data / "dev.tsv", "sentence", "label")
    clf = TextClassifier("logit", encoder="all-minilm-l6-v2", penalty="l2", C=1.0)
    clf.fit(train.texts, [NAMES[v] for v in train.labels])
    clf.save(args.out)
    report = clf.evaluate(dev.texts, [NAMES[v] for v in dev.labels])
    print(f"saved {args.out}; fitted in {clf.fit_seconds_:.0f} s")
    print(f"SST-2 dev: accuracy {report.accuracy:.4f}, macro-F1 {report.macro_f1:.4f}")


if __name__ == "__main__":
    main()
