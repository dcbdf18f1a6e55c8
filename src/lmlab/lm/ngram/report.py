"""The lecture's n-gram tables: bigram counts and probabilities, perplexity by order.

>>> t = bigram_table("runs/restaurant", "i want to eat chinese food lunch spend".split())
>>> t.counts[0][1], t.probs[0][1]          # c(i want), p(want | i)
>>> rows = compare_orders("ptb.train.txt", "ptb.test.txt", orders=[1, 2, 3])
>>> [(r.order, round(r.perplexity)) for r in rows]
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError
from lmlab.lm.ngram.counts import count_ngrams, read_corpus
from lmlab.lm.ngram.model import NgramConfig, NgramLM, splitter


@dataclass
class BigramTable:
    """c(w_prev w) and p(w | w_prev) for every pair of the given words (rows: w_prev)."""

    words: list[str]
    counts: list[list[int]] | None  # None for a model read from an ARPA file (no counts)
    probs: list[list[float]]
    unigram_counts: list[int] | None

    def to_dict(self) -> dict:
        return asdict(self)


def _ngram_model(model) -> NgramLM:
    from lmlab.models import load_lm

    lm = load_lm(model)
    if not isinstance(lm, NgramLM):
        raise LmlabError(f"{lm.name} is not an n-gram model (train one: lmlab train ngram)")
    return lm


def bigram_table(model: str | Path | NgramLM, words: list[str]) -> BigramTable:
    """The bigram count and probability tables of a model for `words` (as in the lecture).

    Args:
        model: an n-gram model, its run directory or an ARPA file.
        words: the words that label both the rows (previous word) and the columns.

    Returns:
        A BigramTable; `probs[i][j]` = p(words[j] | words[i]) under the model's smoothing
        (an `mle` model gives the lecture's c(w_prev w) / c(w_prev)).
    """
    lm = _ngram_model(model)
    if not words:
        raise LmlabError("give the words of the table (--words w1 w2 ...)", param="words")
    unknown = [w for w in words if lm.words_of([w])[0] not in lm.tokenizer.ids]
    if unknown:  # it would silently stand for <unk>, with <unk>'s counts and probabilities
        raise LmlabError(
            f"not in the model's vocabulary: {', '.join(unknown)} (ask for <unk> to see how "
            "unknown words fare)",
            param="words",
        )
    probs = [[lm.prob(w, [prev]) for w in words] for prev in words]
    counts = unigrams = None
    if lm.counts is not None and lm.order >= 2:
        counts = [[lm.count([prev, w]) for w in words] for prev in words]
        unigrams = [lm.count([w]) for w in words]
    return BigramTable(list(words), counts, probs, unigrams)


@dataclass
class OrderResult:
    """One row of the perplexity-by-order table."""

    order: int
    smoothing: str
    perplexity: float
    tokens: int
    oov: int
    ngrams: int  # n-grams in the model, all orders
    seconds: float  # estimation and scoring (the shared counting is reported apart)


def compare_orders(
    train: str | Path | list[str | Path],
    test: str | Path,
    *,
    orders: list[int] = (1, 2, 3),
    smoothing: str = "mkn",
    k: float = 1.0,
    min_count: int = 1,
    max_vocab: int | None = None,
    lowercase: bool = False,
    tokenizer: str | None = None,
) -> list[OrderResult]:
    """Train one model per order on `train` and give each one's perplexity on `test`.

    The corpus is read and counted once, up to the highest order; each order is then smoothed
    from the same counts.
    """
    orders = sorted(set(orders))
    if not orders or orders[0] < 1:
        raise LmlabError("--orders must be positive integers", param="orders")
    paths = [train] if isinstance(train, str | Path) else list(train)
    corpus = read_corpus(
        paths,
        lowercase=lowercase,
        min_count=min_count,
        max_vocab=max_vocab,
        split=splitter(tokenizer),
    )
    counts = count_ngrams(corpus, orders[-1])
    out = []
    for n in orders:
        start = time.perf_counter()
        config = NgramConfig(n, smoothing, k, min_count, max_vocab, lowercase, tokenizer)
        lm = NgramLM.from_counts(counts, config)
        ev = lm.evaluate_file(test)
        seconds = time.perf_counter() - start
        out.append(
            OrderResult(
                n, smoothing, ev.perplexity, ev.tokens, ev.oov, sum(lm.tables.sizes), seconds
            )
        )
    return out


def plot_perplexities(results: list[OrderResult], path: str | Path, title: str = "") -> Path:
    """A bar chart of perplexity by order, written as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(1.2 * len(results) + 2.5, 3.5))
    labels = [f"{r.order}-gram" for r in results]
    values = [r.perplexity for r in results]
    finite = [v if np.isfinite(v) else 0.0 for v in values]  # an mle model can score infinity
    bars = ax.bar(labels, finite, color="#4c72b0")
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], padding=2)
    ax.set_ylabel("test perplexity")
    ax.set_title(title or f"Perplexity by order ({results[0].smoothing})")
    ax.set_ylim(0, max(finite, default=0.0) * 1.15 or 1.0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
