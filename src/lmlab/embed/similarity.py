"""Similarity of vectors: cosine, dot product and euclidean distance, for pairs and matrices.

Each metric is a plain function of two 2-D arrays (n, d) and (m, d) -> (n, m); `similarity`
accepts texts too (embedded first) and 1-D vectors (a scalar comes back for two vectors).
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError


class Metric(StrEnum):
    cosine = "cosine"
    dot = "dot"
    euclidean = "euclidean"  # a distance: smaller is closer


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a_i, b_j) = a_i . b_j / (|a_i| |b_j|); a zero vector has cosine 0 with everything."""
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


def dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a_i . b_j (equal to cosine for L2-normalized vectors)."""
    return a @ b.T


def euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a_i - b_j|, from |a|^2 + |b|^2 - 2 a.b (clipped at 0 against rounding)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0))


METRICS = {Metric.cosine: cosine, Metric.dot: dot, Metric.euclidean: euclidean}


def similarity(
    a,
    b=None,
    *,
    metric: str = "cosine",
    model=None,
) -> float | np.ndarray:
    """Similarity of `a` and `b` (or of `a` with itself): a number for two single items, else
    a matrix (len(a), len(b)).

    Args:
        a, b: texts (a string or a list of strings, embedded with `model`) or vectors
            (1-D or 2-D arrays).
        metric: cosine, dot or euclidean (a distance).
        model: the encoder for texts (default all-minilm-l6-v2).

    Example:
        >>> lmlab.similarity("bank", "banks")                 # about 0.947
        >>> lmlab.similarity(["bank", "river", "money"])      # a 3 x 3 matrix
    """
    try:
        fn = METRICS[Metric(metric)]
    except ValueError:
        raise LmlabError(
            f"metric must be one of {', '.join(m.value for m in Metric)}", param="metric"
        ) from None
    single = _is_single(a) and (b is None or _is_single(b))
    va = _vectors(a, model)
    vb = va if b is None else _vectors(b, model)
    _warn_zero_vectors([(a, va)] if b is None else [(a, va), (b, vb)], model)
    if va.shape[1] != vb.shape[1]:
        raise LmlabError(f"vectors of different sizes: {va.shape[1]} and {vb.shape[1]}")
    out = fn(va.astype(np.float64), vb.astype(np.float64))
    return float(out[0, 0]) if single else out


def _is_single(x) -> bool:
    return isinstance(x, str) or (isinstance(x, np.ndarray) and x.ndim == 1)


def _vectors(x, model) -> np.ndarray:
    if isinstance(x, str) or (isinstance(x, list | tuple) and x and isinstance(x[0], str)):
        from lmlab.embed.load import encode
        from lmlab.models import DEFAULT_ENCODER

        return np.atleast_2d(encode(x, model or DEFAULT_ENCODER))
    v = np.asarray(x, dtype=np.float32)
    if v.ndim not in (1, 2):
        raise LmlabError("vectors must be 1-D or 2-D arrays")
    return np.atleast_2d(v)


def _warn_zero_vectors(pairs: list[tuple[object, np.ndarray]], model) -> None:
    """Warn about texts whose vector is all zeros: a bag-of-words text with no word of the
    vocabulary (or an empty text). Its similarity is 0 to everything, itself included, which
    reads as a finding but is only a missing vocabulary."""
    empty: list[str] = []
    for x, vectors in pairs:
        texts = [x] if isinstance(x, str) else x
        if isinstance(texts, list | tuple) and texts and isinstance(texts[0], str):
            empty += [t for t, v in zip(texts, vectors, strict=True) if not v.any()]
    if not empty:
        return
    from lmlab.models import DEFAULT_ENCODER

    name = (
        getattr(model, "spec", None)
        or getattr(model, "name", None)
        or str(model or DEFAULT_ENCODER)
    )
    shown = ", ".join(repr(t) for t in list(dict.fromkeys(empty))[:5])
    more = f" and {len(set(empty)) - 5} more" if len(set(empty)) > 5 else ""
    warnings.warn(
        f"no word of {shown}{more} is in the vocabulary of {name}: a zero vector, whose "
        "similarity is 0 to every text (itself included) and means nothing",
        stacklevel=3,
    )


def similarity_table(
    texts: list[str], model: str | Path = "all-minilm-l6-v2", metric: str = "cosine"
) -> np.ndarray:
    """The pairwise matrix of `texts` under `metric` (what `lmlab similarity` prints)."""
    if len(texts) < 2:
        raise LmlabError("give at least two texts to compare", param="texts")
    return similarity(list(texts), metric=metric, model=model)
