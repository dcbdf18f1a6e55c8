"""Smoothing: n-gram counts -> a backoff model (probabilities and backoff weights per n-gram).

Four estimators, all written as what an ARPA file can hold exactly: for each n-gram a
probability p(w | h), and for each context h a backoff weight b(h), so that

    p(w | h) = p_listed(w | h)               if the n-gram (h, w) is listed,
             = b(h) * p(w | h')              otherwise (h' = h without its first word).

Notation: c = raw count, a = count used by the estimator, h = context (the first n-1 words),
V' = vocabulary size without `<s>` (which is never predicted).

mle      p(w | h) = c(h w) / c(h); b(h) = 0 for a seen context (unseen words get nothing),
         1 for an unseen one (it backs off to the shorter context).
add-k    seen n-grams p(w | h) = (c(h w) + k) / (c(h) + k V'), Laplace at k = 1. The mass left
         for the words never seen after h, k (V' - T(h)) / (c(h) + k V'), is shared among them in
         proportion to the lower order (b(h) normalises), which keeps the model exact in ARPA;
         at order 1 this is plain Laplace. T(h) = number of distinct words seen after h.
kn       interpolated Kneser–Ney (Kneser & Ney 1995; Chen & Goodman 1998, eq. 17) with one
         discount D per order, D = n1 / (n1 + 2 n2) (Ney, Essen & Kneser 1994).
mkn      interpolated modified Kneser–Ney (Chen & Goodman 1998, section 3): three discounts per
         order for counts 1, 2 and 3+, from the count-of-counts n1..n4 of that order:
             Y = n1 / (n1 + 2 n2)
             D1 = 1 - 2 Y n2 / n1,   D2 = 2 - 3 Y n3 / n2,   D3+ = 3 - 4 Y n4 / n3

Kneser–Ney (both): the highest order uses raw counts; a lower order n uses continuation counts
a(w1..wn) = N1+(. w1..wn), the number of distinct words seen before the n-gram, because a lower
order is only consulted when the longer context was not decisive ("Francisco" is frequent but
follows only "San"). N-grams that start with `<s>` have no word before them and keep their raw
count (as KenLM and SRILM do). Then, with D(a) the discount for count a,

    p(w | h) = (a(h w) - D(a(h w))) / sum_v a(h v)  +  gamma(h) p(w | h')
    gamma(h) = (D1 N1(h .) + D2 N2(h .) + D3+ N3+(h .)) / sum_v a(h v)

(N_i(h .) = number of words following h with count i), i.e. the discounted mass, which equals
the backoff weight b(h) in ARPA. Order 1 interpolates with the uniform distribution 1 / V'.
A discount whose formula is undefined on a tiny corpus (some count-of-count is zero) falls back
to Y (or 0.5), and every discount is clipped to [0, its count].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmlab.errors import LmlabError
from lmlab.lm.ngram.counts import BOS, NgramCounts

SMOOTHINGS = ("mle", "add-k", "kn", "mkn")


@dataclass
class Estimate:
    """A backoff model as linear probabilities (float64), before it is stored as log10."""

    prob: list[np.ndarray]  # prob[n-1][row] = p(w | h) of the n-gram in that row
    bow: list[np.ndarray]  # bow[n-1][row] = b(row as a context); 1 where it is no context
    is_context: list[np.ndarray]  # bool: the n-gram is followed by a word at order n + 1
    discounts: list[list[float]] = field(default_factory=list)  # per order: [D] or [D1, D2, D3+]


def count_of_counts(a: np.ndarray, upto: int = 4) -> list[int]:
    """n_i = number of n-grams with count exactly i, for i = 1..upto."""
    return [int(np.count_nonzero(a == i)) for i in range(1, upto + 1)]


def kn_discount(a: np.ndarray) -> float:
    """D = n1 / (n1 + 2 n2), the single Kneser–Ney discount (0.5 when undefined)."""
    n1, n2 = count_of_counts(a, 2)
    return n1 / (n1 + 2 * n2) if n1 + n2 > 0 and n1 > 0 else 0.5


def mkn_discounts(a: np.ndarray) -> list[float]:
    """[D1, D2, D3+] of Chen & Goodman (1998), from the count-of-counts of one order."""
    n1, n2, n3, n4 = count_of_counts(a, 4)
    y = kn_discount(a)
    ds = [
        1 - 2 * y * n2 / n1 if n1 else y,
        2 - 3 * y * n3 / n2 if n2 else y,
        3 - 4 * y * n4 / n3 if n3 else y,
    ]
    return [float(np.clip(d, 0.0, i + 1)) for i, d in enumerate(ds)]


def continuation_counts(counts: NgramCounts, n: int, order: int) -> np.ndarray:
    """The counts Kneser–Ney uses at order n of an order-`order` model (see the docstring)."""
    raw = counts.counts[n - 1]
    if n == order:
        return raw.astype(np.float64)
    V = counts.vocab_size
    # Each (n+1)-gram (v w1..wn) has the n-gram w1..wn as its suffix: count one per v.
    suffix = counts.keys[n] // V
    a = np.bincount(suffix, minlength=len(raw)).astype(np.float64)
    first_word = counts.keys[n - 1] % V if n > 1 else counts.keys[0]
    starts = first_word == BOS  # nothing stands before <s>: keep the raw count
    a[starts] = raw[starts]
    return a


def estimate(counts: NgramCounts, order: int, smoothing: str = "mkn", k: float = 1.0) -> Estimate:
    """Probabilities and backoff weights of an order-`order` model from counts.

    Args:
        counts: from `count_ngrams`, of at least `order` orders.
        order: the model's order N (1 = unigram).
        smoothing: "mle", "add-k", "kn" or "mkn".
        k: the pseudo-count of add-k (k = 1 is Laplace).

    Returns:
        An Estimate, whose probabilities over the vocabulary sum to 1 for every context.
    """
    if smoothing not in SMOOTHINGS:
        raise LmlabError(
            f"unknown smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}",
            param="smoothing",
        )
    if smoothing == "add-k" and not k > 0:
        raise LmlabError(f"add-k needs k > 0 (got {k})", param="k")
    if not 1 <= order <= counts.order:
        raise LmlabError(f"order must be between 1 and {counts.order} (got {order})", param="order")
    V = counts.vocab_size
    v_pred = V - 1  # V': every word but <s> can be predicted
    out = Estimate([], [], [])
    lower = np.full(V, 1.0 / v_pred)  # order 0: the uniform distribution, over V' words
    lower[BOS] = 0.0
    for n in range(1, order + 1):
        c = counts.counts[n - 1].astype(np.float64)
        if n == 1:
            c[BOS] = 0.0  # <s> is a context, never a prediction
        ctx = counts.prefix[n - 1]  # row of each n-gram's context at order n-1 (order 1: 0)
        n_ctx = 1 if n == 1 else len(counts.keys[n - 2])
        if smoothing in ("kn", "mkn"):
            a = continuation_counts(counts, n, order)
            if n == 1:
                a[BOS] = 0.0
            seen = a[a > 0]
            if smoothing == "kn":
                ds = [kn_discount(seen)]
                d = np.where(a > 0, ds[0], 0.0)
            else:
                ds = mkn_discounts(seen)
                # D(a) for a = 0 (unseen unigrams), 1, 2, 3+
                d = np.array([0.0, *ds])[np.minimum(a, 3).astype(np.int64)]
            out.discounts.append(ds)
            total = np.bincount(ctx, weights=a, minlength=n_ctx)  # sum_v a(h v)
            taken = np.bincount(ctx, weights=d, minlength=n_ctx)  # discounted mass per h
            gamma = np.divide(taken, total, out=np.ones(n_ctx), where=total > 0)
            prob = np.divide(a - d, total[ctx], out=np.zeros(len(a)), where=total[ctx] > 0)
            prob += gamma[ctx] * lower
        elif smoothing == "mle":
            total = np.bincount(ctx, weights=c, minlength=n_ctx)
            gamma = np.where(total > 0, 0.0, 1.0)
            prob = np.divide(c, total[ctx], out=np.zeros(len(c)), where=total[ctx] > 0)
        else:  # add-k, with the unseen words' mass shared by the lower order
            total = np.bincount(ctx, weights=c, minlength=n_ctx) + k * v_pred
            seen_types = np.bincount(ctx, weights=(c > 0), minlength=n_ctx)
            prob = np.where(c > 0, (c + k) / total[ctx], 0.0)
            if n == 1:  # every unigram is listed: plain Laplace, nothing to back off to
                prob = (c + k) / total[0]
                prob[BOS] = 0.0
            unseen_mass = k * (v_pred - seen_types) / total
            lower_seen = np.bincount(ctx, weights=np.where(c > 0, lower, 0.0), minlength=n_ctx)
            room = 1.0 - lower_seen
            gamma = np.divide(unseen_mass, room, out=np.zeros(n_ctx), where=room > 1e-12)
        if n > 1:
            out.bow[n - 2] = gamma
            out.is_context[n - 2] = np.bincount(ctx, minlength=n_ctx) > 0
        out.prob.append(prob)
        out.bow.append(np.ones(len(prob)))
        out.is_context.append(np.zeros(len(prob), dtype=bool))
        if n < order:  # p(w1..w_{n+1} suffix) for the next order: rows of these n-grams
            lower = prob[counts.keys[n] // V]
    return out
