"""Corpus -> n-gram counts held in compact numpy arrays (a reversed trie), read as a stream.

Layout. Word ids: 0 `<unk>`, 1 `<s>`, 2 `</s>`, then the words by falling frequency. Every
n-gram of order n is one int64 key in a sorted array for that order:

    key(w1 .. wn) = index(w2 .. wn) * V + w1        (order 1: key(w) = w)

where index(w2 .. wn) is the position of the (n-1)-gram suffix in the order n-1 array. Keys grow
to the LEFT, the way SRILM and KenLM store contexts reversed: one walk from the predicted word
back through its history finds every n-gram that ends in it, which is what backoff scoring and
the Kneser–Ney continuation counts need. An n-gram is a row number; its suffix is `key // V`,
its first word `key % V`. No Python dict of tuples: PTB's 2.8M n-grams of orders 1-5 take 22 MB.

Sentences: one per line, whitespace-separated words, framed as `<s> w1 .. wm </s>`; n-grams
never cross a sentence boundary. The token stream of the whole corpus is an int32 array.
"""

from __future__ import annotations

import contextlib
import itertools
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError

UNK, BOS, EOS = 0, 1, 2
SPECIALS = ("<unk>", "<s>", "</s>")


def read_sentences(
    paths: Iterable[str | Path],
    *,
    lowercase: bool = False,
    split: Callable[[str], list[str]] = str.split,
    on_bytes: Callable[[int], object] | None = None,
) -> Iterator[list[str]]:
    """Yield the words of each non-empty line of the files, one file after the other.

    `split` turns a line into words (whitespace by default; a subword tokenizer's `tokens`).
    A file that cannot be read, or a line that is not UTF-8, is a one-line LmlabError naming
    the file and the line. `on_bytes(n)` is told how many bytes were read, now and then.
    """
    done = 0
    for path in map(Path, paths):
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below; bytes, to report the bad line
        except OSError as e:
            raise LmlabError(f"cannot read {path}: {e.strerror or e}", param="corpus") from None
        with f:
            for lineno, raw in enumerate(f, 1):
                done += len(raw)
                if on_bytes is not None and lineno % 20_000 == 0:
                    on_bytes(done)
                    done = 0
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise LmlabError(
                        f"{path}, line {lineno}: not UTF-8 text (convert the file to UTF-8)",
                        param="corpus",
                    ) from None
                words = split(line.lower() if lowercase else line)
                if words:
                    yield words
    if on_bytes is not None:
        on_bytes(done)


@contextlib.contextmanager
def reading_progress(paths: list[Path], enabled: bool) -> Iterator[Callable[[int], object] | None]:
    """Progress over the bytes of the corpus files (lmlab.progress shows it), or None."""
    if not enabled:
        yield None
        return
    from lmlab import progress

    total = sum(p.stat().st_size for p in paths if p.is_file())
    with progress.task(total, unit="B", desc="reading") as advance:
        yield advance


@dataclass
class Corpus:
    """A corpus as word ids: the vocabulary and the framed token stream."""

    vocab: list[str]  # id -> word; the three specials first
    tokens: np.ndarray  # int32 (n_tokens,): <s> w .. </s> <s> w .. </s> ...
    n_sentences: int
    n_words: int  # words read, before framing (each sentence adds <s> and </s>)
    n_unk: int  # words replaced by <unk> (below --min-count or beyond --max-vocab)


def read_corpus(
    paths: Iterable[str | Path],
    *,
    lowercase: bool = False,
    min_count: int = 1,
    max_vocab: int | None = None,
    split: Callable[[str], list[str]] = str.split,
    progress: bool = False,
) -> Corpus:
    """Read text files into word ids in one streaming pass, then fix the vocabulary.

    Words get provisional ids as they come (a dict from word to int, the only per-type Python
    object); the stream is kept as 4 bytes per token. Afterwards the words seen at least
    `min_count` times (and only the `max_vocab` most frequent, when given) keep an id; the rest
    become `<unk>`. A literal `<unk>` in the text is the unknown word; literal `<s>` and `</s>`
    are treated as unknown too (they would break the sentence framing).

    Example:
        >>> corpus = read_corpus(["ptb.train.txt"], min_count=1)
        >>> len(corpus.vocab), corpus.n_sentences
    """
    if min_count < 1:
        raise LmlabError(f"--min-count must be at least 1 (got {min_count})", param="min_count")
    if max_vocab is not None and max_vocab < 1:
        raise LmlabError(f"--max-vocab must be at least 1 (got {max_vocab})", param="max_vocab")
    paths = [Path(p) for p in paths]
    if not paths:
        raise LmlabError("give at least one corpus file", param="corpus")
    # provisional ids 0-2 are the framing tokens; words (even a literal "<s>") count from 3
    provisional: defaultdict[str, int] = defaultdict(itertools.count(len(SPECIALS)).__next__)
    stream = array("i")
    n_sentences = 0
    with reading_progress(paths, progress) as on_bytes:
        sentences = read_sentences(paths, lowercase=lowercase, split=split, on_bytes=on_bytes)
        for words in sentences:
            stream.append(BOS)
            stream.extend(map(provisional.__getitem__, words))
            stream.append(EOS)
            n_sentences += 1
    if n_sentences == 0:
        names = ", ".join(str(p) for p in paths)
        raise LmlabError(f"no sentence found in {names} (the corpus is empty)", param="corpus")
    raw = np.frombuffer(stream, dtype=np.int32)
    words = [*SPECIALS, *provisional]  # provisional id -> word (dicts keep insertion order)
    freq = np.bincount(raw, minlength=len(words))
    # Final order: specials, then words by falling count (ties alphabetical, so runs agree).
    ordinary = [i for i in range(3, len(words)) if words[i] not in SPECIALS]
    ordinary = [i for i in ordinary if freq[i] >= min_count]
    ordinary.sort(key=lambda i: (-freq[i], words[i]))
    if max_vocab is not None:
        ordinary = ordinary[:max_vocab]
    remap = np.full(len(words), UNK, dtype=np.int32)  # provisional id -> final id
    remap[[BOS, EOS]] = [BOS, EOS]
    remap[ordinary] = np.arange(3, 3 + len(ordinary), dtype=np.int32)
    tokens = remap[raw]
    n_words = len(raw) - 2 * n_sentences
    literal_unk = int(freq[provisional["<unk>"]]) if "<unk>" in provisional else 0
    n_unk = int(np.count_nonzero(tokens == UNK)) - literal_unk
    return Corpus(
        list(SPECIALS) + [words[i] for i in ordinary], tokens, n_sentences, n_words, n_unk
    )


def sentence_positions(tokens: np.ndarray) -> np.ndarray:
    """Position of each token in its sentence (0 for `<s>`): the longest n-gram ending there
    has order position + 1."""
    starts = np.flatnonzero(tokens == BOS)
    lengths = np.diff(np.append(starts, len(tokens)))
    return np.arange(len(tokens)) - np.repeat(starts, lengths)


def lookup(keys: np.ndarray, parent: np.ndarray, word: np.ndarray, vocab_size: int) -> np.ndarray:
    """Row of the n-gram (word, *parent) in a sorted key array, or -1 (vectorised).

    `parent` holds rows of the (n-1)-gram suffixes (-1 for missing ones).
    """
    wanted = parent.astype(np.int64) * vocab_size + word
    if len(wanted) > 50_000:  # sorted needles keep the binary searches in cache: 2-3x faster
        by_key = np.argsort(wanted)
        row = np.empty(len(wanted), dtype=np.int64)
        row[by_key] = np.searchsorted(keys, wanted[by_key])
    else:
        row = np.searchsorted(keys, wanted)
    row = np.minimum(row, len(keys) - 1)
    found = (keys[row] == wanted) & (parent >= 0)
    return np.where(found, row, -1)


@dataclass
class NgramCounts:
    """Raw counts of every n-gram of orders 1..order, in the reversed-trie layout above."""

    vocab: list[str]
    keys: list[np.ndarray]  # keys[n-1]: sorted int64 keys of the n-grams of order n
    counts: list[np.ndarray]  # int64, aligned with keys
    prefix: list[np.ndarray]  # row of (w1 .. w_{n-1}) in order n-1 (the context); order 1: 0
    n_sentences: int
    n_words: int

    @property
    def order(self) -> int:
        return len(self.keys)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


def count_ngrams(corpus: Corpus, order: int) -> NgramCounts:
    """Count all n-grams of orders 1..order of a corpus, order by order, with numpy only.

    Each order costs one `np.unique` over the positions where an n-gram fits: the key of the
    n-gram ending at position i is built from the row of the (n-1)-gram ending at i (its suffix).
    """
    if order < 1:
        raise LmlabError(f"--order must be at least 1 (got {order})", param="order")
    tokens, V = corpus.tokens, len(corpus.vocab)
    pos = sentence_positions(tokens)
    keys = [np.arange(V, dtype=np.int64)]  # every word has a unigram row, seen or not
    counts = [np.bincount(tokens, minlength=V).astype(np.int64)]
    prefix = [np.zeros(V, dtype=np.int64)]
    ending = tokens.astype(np.int64)  # row of the (n-1)-gram ending at each position, or -1
    for n in range(2, order + 1):
        at = np.flatnonzero(pos >= n - 1)  # positions where an n-gram ends inside its sentence
        if len(at) == 0:  # no sentence is long enough: the higher orders are empty
            empty = np.zeros(0, dtype=np.int64)
            keys.append(empty)
            counts.append(empty)
            prefix.append(empty)
            ending = np.full(len(tokens), -1, dtype=np.int64)
            continue
        key = ending[at] * V + tokens[at - (n - 1)]
        unique, first, inverse, count = np.unique(
            key, return_index=True, return_inverse=True, return_counts=True
        )
        keys.append(unique)
        counts.append(count.astype(np.int64))
        prefix.append(ending[at[first] - 1])  # the (n-1)-gram ending one position earlier
        ending = np.full(len(tokens), -1, dtype=np.int64)
        ending[at] = inverse
    return NgramCounts(corpus.vocab, keys, counts, prefix, corpus.n_sentences, corpus.n_words)
