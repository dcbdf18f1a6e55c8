"""`train_word2vec()`: word vectors from a text file, through the one training loop.

The corpus is read and counted (corpus.py), and the loop (training/loop.py) runs the word2vec
objective (training/objectives/word2vec.py), which takes word2vec's SGD steps itself with the
numba kernel of kernel.py, on `workers` threads, at word2vec's learning rate: 0.025 for
skip-gram, 0.05 for CBOW (word2vec.c's), decaying linearly to 0.0001 over the epochs; resume,
metrics.jsonl, loss.png and the progress callback come with the loop.

The run directory: lmlab.json ({"kind": "word2vec", "model": {"dim", "vocab_size"}, "train":
{options}, "workers": threads}), vocab.txt (word<TAB>count, most frequent first),
model.safetensors ("input": the word vectors, "output"), checkpoint/, metrics.jsonl, loss.png.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from lmlab.errors import LmlabError
from lmlab.home import atomic_write_text
from lmlab.runs import RUN_FILE, read_run
from lmlab.training.checkpoint import CHECKPOINT, ModelWeights
from lmlab.training.loop import Loop
from lmlab.training.objectives.word2vec import WordPairs, WordVectorsNet
from lmlab.training.optim import RateOnly
from lmlab.training.progress import progress_callback
from lmlab.training.results import TrainConfig, TrainResult
from lmlab.wordvec.corpus import read_corpus

KIND = "word2vec"


def train_word2vec(
    corpus: str | Path,
    out: str | Path,
    *,
    cbow: bool = False,
    dim: int = 100,
    window: int = 5,
    negative: int = 5,
    min_count: int = 5,
    epochs: int = 5,
    sample: float = 1e-3,
    lr: float | None = None,
    min_lr: float = 0.0001,
    batch_words: int = 10_000,
    lowercase: bool = False,
    seed: int = 1,
    workers: int | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Train word2vec (skip-gram, or CBOW) with negative sampling on a text file into `out`.

    Args:
        corpus: text, one sentence per line, words separated by whitespace.
        cbow: the mean of the context predicts the word (else skip-gram: each context word).
        dim, window, negative, min_count, epochs, sample: word2vec's (gensim's defaults, but
            skip-gram: window 5, 5 noise words, words seen < 5 times dropped, subsampling
            threshold 1e-3).
        lr, min_lr: the learning rate, decaying linearly from lr to min_lr (constant within a
            step); lr None: 0.025 for skip-gram, 0.05 for CBOW (word2vec.c's).
        batch_words: corpus words per step (one learning rate, one metrics entry).
        lowercase: lower-case the corpus first.
        seed: the initial vectors, the subsampling and every random draw.
        workers: threads training at once (None: the cores this process may use). One worker
            makes a run repeatable bit for bit; more make runs differ a little (Hogwild).

    Example:
        >>> train_word2vec("corpus.txt", "runs/w2v", epochs=5)
        >>> lmlab.load_encoder("runs/w2v").analogy("man", "king", "woman")
    """
    out = Path(out)
    if lr is None:
        lr = 0.05 if cbow else 0.025
    if workers is None:
        cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        workers = len(cores) if cores else os.cpu_count() or 1
    for name, value, least in (("dim", dim, 1), ("window", window, 1), ("negative", negative, 1),
                               ("min-count", min_count, 1), ("epochs", epochs, 1),
                               ("batch-words", batch_words, 1),
                               ("workers", workers, 1)):  # fmt: skip
        if value < least:
            raise LmlabError(f"--{name} must be at least {least}, not {value}", param=name)
    if lr <= 0 or not 0 <= min_lr <= lr or sample < 0:
        raise LmlabError("need 0 < --lr, 0 <= min_lr <= lr and --sample >= 0")
    options = {"corpus": str(corpus), "cbow": cbow, "dim": dim, "window": window,
               "negative": negative, "min_count": min_count, "epochs": epochs,
               "sample": sample, "lr": lr, "min_lr": min_lr, "batch_words": batch_words,
               "lowercase": lowercase, "seed": seed}  # fmt: skip
    if resume:
        if not (out / CHECKPOINT).exists():
            raise LmlabError(f"nothing to resume in {out}: it has no checkpoint")
        run = read_run(out)
        changed = sorted(k for k, v in options.items() if run.get("train", {}).get(k) != v)
        if run.get("kind") != KIND or changed:
            raise LmlabError(
                f"--resume needs a {KIND} run with the same options in {out}; these differ: "
                + (", ".join(changed) or "kind")
            )
    elif (out / CHECKPOINT).exists():
        raise LmlabError(f"{out} already holds a training run: pass --resume or another --out")
    data = read_corpus(corpus, min_count=min_count, lowercase=lowercase)
    objective = WordPairs(data, window=window, negative=negative, sample=sample,
                          batch_words=batch_words, cbow=cbow, workers=workers,
                          seed=seed)  # fmt: skip
    model = WordVectorsNet(len(data.words), dim, seed)
    config = TrainConfig(lr=lr, min_lr=min_lr, warmup=0, schedule="linear", optimizer="sgd",
                         grad_clip=0.0, device="cpu", dtype="float32", seed=seed,
                         eval_every=objective.blocks,
                         log_every=max(1, objective.blocks // 20))  # fmt: skip
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        vocab = "".join(f"{w}\t{c}\n" for w, c in zip(data.words, data.counts, strict=True))
        atomic_write_text(out / "vocab.txt", vocab)
        run = {"kind": KIND, "model": {"dim": dim, "vocab_size": len(data.words)},
               "train": options, "workers": workers,
               "corpus_words": data.raw_words}  # fmt: skip
        atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
        (out / "metrics.jsonl").unlink(missing_ok=True)
    torch.manual_seed(seed)
    optimizer = RateOnly(lr)  # the objective updates the vectors itself
    total = epochs * objective.blocks
    loop = Loop(model, objective, optimizer, config, total=total, out=out,
                device=torch.device("cpu"), weights=ModelWeights(model), resume=resume,
                progress=progress_callback(progress, unit="words_s"),
                ylabel="negative-sampling loss per prediction")  # fmt: skip
    try:
        return loop.run()
    finally:
        objective.close()
