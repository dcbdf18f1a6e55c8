"""A word2vec corpus: its vocabulary, its words as ids, and the two distributions word2vec
samples from (Mikolov et al. 2013): which words to keep and which to draw as noise.

Words are whitespace-separated, one sentence per line (windows never cross a line); words
seen fewer than `min_count` times are dropped before windows are taken, as gensim does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError


@dataclass
class Corpus:
    """The vocabulary (most frequent first), counts, and the corpus as ids with line numbers."""

    words: list[str]
    counts: np.ndarray  # int64 (V,)
    ids: np.ndarray  # int64 (N,): the in-vocabulary words, in order
    lines: np.ndarray  # int64 (N,): the line each word is on
    raw_words: int  # words read, out-of-vocabulary ones included


def read_corpus(path: str | Path, *, min_count: int = 5, lowercase: bool = False) -> Corpus:
    """Count the words of a text file and keep those seen at least `min_count` times."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LmlabError(f"cannot read {path}: {e}") from None
    lines = [line.split() for line in (text.lower() if lowercase else text).splitlines()]
    tokens = list(chain.from_iterable(lines))
    counts = Counter(tokens)
    words = sorted(w for w, c in counts.items() if c >= min_count)
    words.sort(key=counts.__getitem__, reverse=True)  # most frequent first, ties a to z (stable)
    if len(words) < 2:
        raise LmlabError(
            f"{path} has {len(words)} word(s) seen at least --min-count {min_count} times; "
            "word2vec needs at least 2 (lower --min-count or give more text)"
        )
    index = {w: i for i, w in enumerate(words)}
    ids = np.fromiter(map(index.get, tokens, repeat(-1)), np.int64, len(tokens))  # -1: dropped
    line_of = np.repeat(np.arange(len(lines)), np.fromiter(map(len, lines), np.int64, len(lines)))
    known = ids >= 0
    return Corpus(
        words,
        np.array([counts[w] for w in words], np.int64),
        ids[known],
        line_of[known],
        len(tokens),
    )


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """The chance each word is kept by frequent-word subsampling (word2vec.c's, as gensim's):
    (sqrt(f / t) + 1) * t / f with f the word's share of the corpus; 1 when sample is 0."""
    if sample <= 0:
        return np.ones(len(counts))
    share = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(share / sample) + 1) * sample / share)


def noise_probabilities(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """The chance each word is drawn as noise: in proportion to count**power (word2vec's 0.75)."""
    weights = counts.astype(np.float64) ** power
    return weights / weights.sum()
