"""Zero-shot and few-shot accuracy on SST-2 dev with the bundled models.

Methods: zero-shot via="lm" (the bundled chat model; plain prompts and the chat template, with
and without contextual calibration), zero-shot via="cosine" (all-minilm-l6-v2), few-shot with
k = 4 and 8 examples drawn from SST-2 train. Prints accuracy, unparseable answers (few-shot)
and seconds per method. `--limit N` scores a seeded random sample of N dev sentences (the
whole 872 take long on a busy CPU).

Usage: python benchmarks/classify_prompting.py [--limit 200] [--methods lm-plain cosine ...]
       [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lmlab.classify.data import read_labelled
from lmlab.classify.prompting import FewShot, ZeroShot

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
CLASSES = ["negative", "positive"]  # SST-2 label 0, 1
QUESTION = "Text: {text}\nQuestion: Is this text {labels}?\nAnswer:"
METHODS = {
    "lm-question": lambda t: ZeroShot(template=QUESTION, calibrate=False, threads=t),
    "lm-question-calibrated": lambda t: ZeroShot(template=QUESTION, threads=t),
    "lm-chat": lambda t: ZeroShot(chat=True, calibrate=False, threads=t),
    "lm-chat-calibrated": lambda t: ZeroShot(chat=True, threads=t),
    "lm-label-calibrated": lambda t: ZeroShot(template="Text: {text}\nLabel:", threads=t),
    "lm-default": lambda t: ZeroShot(threads=t),  # "{text}\nThis text is", calibrated
    "lm-review-calibrated": lambda t: ZeroShot(template="Review: {text}\nSentiment:", threads=t),
    "cosine": lambda t: ZeroShot(via="cosine"),
    "few-shot-4": lambda t: FewShot(shots=4, threads=t),
    "few-shot-8": lambda t: FewShot(shots=8, threads=t),
}


def read(path: Path) -> tuple[list[str], np.ndarray]:
    """(sentences without SST-2's trailing space, labels 0/1) of an SST-2 file."""
    table = read_labelled(path, "sentence", "label")
    return [t.strip() for t in table.texts], np.array([int(label) for label in table.labels])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=None, help="llama backend threads")
    args = parser.parse_args()
    train_texts, train_y = read(DATA / "train_full.tsv")
    texts, y = read(DATA / "dev.tsv")
    if args.limit is not None and args.limit < len(texts):
        keep = np.sort(np.random.default_rng(0).choice(len(texts), args.limit, replace=False))
        texts, y = [texts[i] for i in keep], y[keep]
    print(f"SST-2 dev: {len(texts)} sentences, {y.mean():.1%} positive")
    print(f"{'method':<22} {'accuracy':>8} {'unparseable':>11} {'seconds':>8}")
    for name in args.methods:
        start = time.perf_counter()
        method = METHODS[name](args.threads).fit(train_texts, train_y, CLASSES, progress=False)
        proba = method.predict_proba(texts)
        seconds = time.perf_counter() - start
        accuracy = float((proba.argmax(1) == y).mean())
        unparseable = method.info.get("unparseable", "")
        print(f"{name:<22} {accuracy:>8.3f} {unparseable!s:>11} {seconds:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
