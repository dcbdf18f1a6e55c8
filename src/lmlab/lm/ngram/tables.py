"""A backoff n-gram model held as numpy arrays, and the two ways to query it fast.

The tables are what an ARPA file holds: per order, the n-gram keys (the reversed trie of
`counts.py`), log10 p(w | h) and log10 b(h). Queries:

- `score_stream`: log10 p of every token of a framed token stream at once, with N-1
  vectorised `searchsorted` walks (scoring a test set: millions of tokens per second);
- `next_log10`: the whole next-word distribution after one history (decoding), starting from
  the unigram distribution and, order by order, adding the context's backoff weight and
  overwriting the words listed after that context.

Backoff (Katz 1987; the ARPA convention): if (h, w) is listed, log p(w | h) is its value;
otherwise log b(h) + log p(w | h'). Unrolled: the value of the longest listed n-gram ending in
w, plus the backoff weights of every longer context of the history that is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lmlab.lm.ngram.counts import BOS, EOS, lookup, sentence_positions

LOG10_ZERO = -99.0  # what ARPA files write for probability 0 (SRILM, KenLM)


@dataclass
class NgramTables:
    """Vocabulary, keys, log10 probabilities and log10 backoff weights of every order."""

    vocab: list[str]
    keys: list[np.ndarray]  # int64, sorted; see counts.py
    log10_prob: list[np.ndarray]  # float32; -inf for probability 0
    log10_bow: list[np.ndarray]  # float32; 0 where the n-gram is no context (and at order N)
    _index: dict = field(default_factory=dict, repr=False)  # lazily built lookup helpers

    @property
    def order(self) -> int:
        return len(self.keys)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def sizes(self) -> list[int]:
        return [len(k) for k in self.keys]

    def word_ids(self) -> dict[str, int]:
        if "ids" not in self._index:
            self._index["ids"] = {w: i for i, w in enumerate(self.vocab)}
        return self._index["ids"]

    def words_of(self, n: int) -> np.ndarray:
        """(size_n, n) word ids of every n-gram of order n, in reading order w1..wn."""
        V = self.vocab_size
        row = np.arange(len(self.keys[n - 1]))
        cols = []
        for m in range(n, 1, -1):  # peel the first word off, then continue with the suffix
            key = self.keys[m - 1][row]
            cols.append(key % V)
            row = key // V
        cols.append(row)  # the last word: the row of a unigram is its word id
        return np.stack(cols, axis=1) if cols else np.zeros((0, n), dtype=np.int64)

    def find(self, words: np.ndarray) -> np.ndarray:
        """Rows of the n-grams `words` (M, n) in order n, -1 where not listed."""
        n = words.shape[1]
        row = words[:, -1].astype(np.int64)
        for j in range(2, n + 1):  # extend to the left, one word at a time
            row = lookup(self.keys[j - 1], row, words[:, -j], self.vocab_size)
        return row

    def _children(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of order n sorted by their context row, the sorted contexts, and last words."""
        if n not in self._index:
            words = self.words_of(n)
            context = self.find(words[:, :-1])
            by_context = np.argsort(context, kind="stable")
            self._index[n] = (by_context, context[by_context], words[by_context, -1])
        return self._index[n]

    def next_log10(self, history: list[int]) -> np.ndarray:
        """log10 p(w | history) for every word w (V,), float64."""
        logp = self.log10_prob[0].astype(np.float64)
        V = self.vocab_size
        context = -1
        for n in range(2, min(self.order, len(history) + 1) + 1):
            # the context of order n-1: the last n-1 words of the history
            if n == 2:
                context = history[-1]
            else:
                row = lookup(self.keys[n - 2], np.array([context]), history[1 - n], V)
                context = int(row[0])
            if context < 0:  # longer contexts are not listed either
                break
            logp += self.log10_bow[n - 2][context]
            rows, contexts, last = self._children(n)
            lo, hi = np.searchsorted(contexts, [context, context + 1])
            logp[last[lo:hi]] = self.log10_prob[n - 1][rows[lo:hi]]
        return logp

    def score_stream(self, tokens: np.ndarray) -> np.ndarray:
        """log10 p of each token given its sentence so far, for a framed stream (float64).

        `tokens` is `<s> w .. </s> <s> ...`; the entry of each `<s>` is 0 (it is not scored).
        """
        tokens = tokens.astype(np.int64)
        V = self.vocab_size
        pos = sentence_positions(tokens)
        # ending[n-1][i]: row of the n-gram of order n ending at position i, or -1
        ending = [tokens]
        for n in range(2, self.order + 1):
            row = np.full(len(tokens), -1, dtype=np.int64)
            at = np.flatnonzero((pos >= n - 1) & (ending[-1] >= 0))
            row[at] = lookup(self.keys[n - 1], ending[-1][at], tokens[at - (n - 1)], V)
            ending.append(row)
        logp = self.log10_prob[0][tokens].astype(np.float64)  # the longest listed n-gram wins
        for n in range(2, self.order + 1):
            have = ending[n - 1] >= 0
            logp[have] = self.log10_prob[n - 1][ending[n - 1][have]]
        for n in range(1, self.order):
            # context of order n ending at i-1 is listed, but the (n+1)-gram ending at i is not
            context = np.concatenate([[-1], ending[n - 1][:-1]])
            context[pos == 0] = -1
            backs_off = (context >= 0) & (ending[n] < 0)
            logp[backs_off] += self.log10_bow[n - 1][context[backs_off]]
        logp[pos == 0] = 0.0
        return logp


def frame(sentences: list[list[int]]) -> np.ndarray:
    """Word-id sentences -> the framed stream `<s> w .. </s> ...` (int64)."""
    parts = []
    for ids in sentences:
        parts.extend((BOS, *ids, EOS))
    return np.array(parts, dtype=np.int64)
