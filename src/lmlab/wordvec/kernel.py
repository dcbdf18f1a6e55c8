"""Word2vec's SGD, pair by pair, compiled with numba: the inner loop of `lmlab train word2vec`.

The algorithm is word2vec.c's (Mikolov et al. 2013), as gensim runs it too:

- each centre word draws its window from 1..`window` (the reduced window: near words count
  more), and the window stops at the centre's line;
- skip-gram: each context word's input vector predicts the centre (a positive label) and
  `negative` noise words drawn afresh for that pair (negative labels, from count**0.75 by
  Walker's alias method) through their output vectors; CBOW: the mean of the context's input
  vectors does, once per centre;
- the gradient of log sigmoid(+score) / log sigmoid(-score) moves the output vectors of the
  centre and its noise words at once, and the input vector(s) after the noise words are done;
- no locks: two threads updating one row at once lose a little of one update (Hogwild,
  Recht et al. 2011; word2vec.c's and gensim's threads do the same).

sigmoid and log sigmoid come from tables over [-MAX_SCORE, MAX_SCORE] (word2vec.c: 1,000
entries over [-6, 6]); a score beyond is read at the table's end. Random numbers come from a
64-bit linear congruential generator (Knuth's MMIX constants), seeded per chunk by the caller:
a chunk run alone is repeatable.

The kernels release the GIL (`nogil`), so threads of one process run them in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_SCORE = 6.0  # sigmoid(6) = 0.9975: beyond, a pair is as good as learned
TABLE_SIZE = 1000
_SCALE = TABLE_SIZE / (2 * MAX_SCORE)
_MULTIPLIER = 6364136223846793005  # Knuth's MMIX LCG; int64 arithmetic wraps around in numba
_INCREMENT = 1442695040888963407
_ONE, _ZERO = np.float32(1.0), np.float32(0.0)


def sigmoid_tables() -> tuple[np.ndarray, np.ndarray]:
    """sigmoid and log sigmoid at the centres of TABLE_SIZE bins over [-MAX_SCORE, MAX_SCORE]."""
    x = -MAX_SCORE + (np.arange(TABLE_SIZE) + 0.5) / _SCALE
    return (1 / (1 + np.exp(-x))).astype(np.float32), (-np.logaddexp(0, -x)).astype(np.float32)


@njit(nogil=True, cache=True)
def _draw(state: int) -> tuple[int, int]:
    """The next state of the generator, and 31 random bits from its high end."""
    state = state * _MULTIPLIER + _INCREMENT
    return state, (state >> 33) & 0x7FFFFFFF


def alias_tables(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias tables of a distribution (Vose's construction): draw a word i uniformly,
    keep it when 31 random bits fall below threshold[i], else take alias[i]. Two reads per draw
    from 8 bytes per word: a table of a million draws (word2vec.c's way) misses the cache on
    every draw and made training 2.5x slower here."""
    n = len(probabilities)
    scaled = np.asarray(probabilities, np.float64) * n / np.sum(probabilities)
    threshold = np.full(n, 2**31, np.int64)  # kept always, unless paired below
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        lo, hi = small.pop(), large[-1]
        threshold[lo], alias[lo] = round(scaled[lo] * 2**31), hi  # lo's column: topped up by hi
        scaled[hi] -= 1.0 - scaled[lo]
        if scaled[hi] < 1.0:
            small.append(large.pop())
    return threshold, alias


@njit(nogil=True, cache=True)
def draw_noise(state: int, threshold: np.ndarray, alias: np.ndarray) -> tuple[int, int]:
    """The next state of the generator, and a word drawn from the alias tables."""
    state, r = _draw(state)
    word = (r * threshold.shape[0]) >> 31
    state, r = _draw(state)
    return state, word if r < threshold[word] else alias[word]


@njit(nogil=True, fastmath=True, cache=True)
def _predict(l1, centre, syn1, threshold, alias, negative, alpha, state, targets, scores, work,
             sigmoid, log_sigmoid):  # fmt: skip
    """One negative-sampling step of input vector `l1` (d,) on `centre` and `negative` noise
    words: their output rows move, and the input's gradient is added to `work` (d,).
    The scores are taken before any row moves (independent dot products run side by side; a
    noise word drawn twice in one step is scored both times before it moves).
    Returns the loss and the generator's state."""
    dim = l1.shape[0]
    targets[0] = centre
    for d in range(1, negative + 1):
        state, targets[d] = draw_noise(state, threshold, alias)
    for d in range(negative + 1):
        out = syn1[targets[d]]
        score = _ZERO
        for k in range(dim):
            score += l1[k] * out[k]
        scores[d] = score
    loss = 0.0
    for d in range(negative + 1):
        if d > 0 and targets[d] == centre:  # the centre drawn as noise: no contradicting update
            continue
        t = int((scores[d] + MAX_SCORE) * _SCALE)
        t = min(max(t, 0), TABLE_SIZE - 1)
        label = _ONE if d == 0 else _ZERO
        g = np.float32((label - sigmoid[t]) * alpha)  # d log sigmoid(+-score) / d score, x lr
        loss -= log_sigmoid[t] if d == 0 else log_sigmoid[TABLE_SIZE - 1 - t]
        out = syn1[targets[d]]
        for k in range(dim):
            work[k] += g * out[k]
            out[k] += g * l1[k]
    return loss, state


@njit(nogil=True, fastmath=True, cache=True)
def train_chunk(ids, lines, start, stop, syn0, syn1, threshold, alias, window, negative, cbow,
                lr, seed, sigmoid, log_sigmoid):  # fmt: skip
    """Train on centres ids[start:stop] (ids, lines: this epoch's kept words and their line
    numbers; the windows may read outside the range), updating syn0 (input) and syn1 (output)
    in place at learning rate `lr`, noise words drawn from the alias tables (`alias_tables`).
    Returns (summed loss, predictions made)."""
    n, dim = ids.shape[0], syn0.shape[1]
    alpha = np.float32(lr)
    work = np.empty(dim, np.float32)
    mean = np.empty(dim, np.float32)
    targets = np.empty(negative + 1, np.int64)
    scores = np.empty(negative + 1, np.float32)
    state, _ = _draw(seed)
    loss, made = 0.0, 0
    for i in range(start, stop):
        centre, line = ids[i], lines[i]
        state, r = _draw(state)
        reach = window - ((r * window) >> 31)  # 1..window
        lo, hi = max(i - reach, 0), min(i + reach + 1, n)
        if cbow:  # the mean of the context's input vectors predicts the centre
            mean[:] = 0
            count = 0
            for j in range(lo, hi):
                if j != i and lines[j] == line:
                    row = syn0[ids[j]]
                    for k in range(dim):
                        mean[k] += row[k]
                    count += 1
            if count == 0:
                continue
            inverse = np.float32(1.0 / count)
            for k in range(dim):
                mean[k] *= inverse
            work[:] = 0
            pair_loss, state = _predict(mean, centre, syn1, threshold, alias, negative, alpha,
                                        state, targets, scores, work, sigmoid,
                                        log_sigmoid)  # fmt: skip
            loss += pair_loss
            made += 1
            for j in range(lo, hi):  # each context word takes the whole gradient (word2vec.c)
                if j != i and lines[j] == line:
                    row = syn0[ids[j]]
                    for k in range(dim):
                        row[k] += work[k]
            continue
        for j in range(lo, hi):  # skip-gram: each context word predicts the centre
            if j == i or lines[j] != line:
                continue
            row = syn0[ids[j]]
            work[:] = 0
            pair_loss, state = _predict(row, centre, syn1, threshold, alias, negative, alpha, state,
                                        targets, scores, work, sigmoid, log_sigmoid)  # fmt: skip
            loss += pair_loss
            made += 1
            for k in range(dim):
                row[k] += work[k]
    return loss, made
