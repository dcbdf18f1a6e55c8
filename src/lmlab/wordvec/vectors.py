"""A word2vec run's vectors: a static word encoder (a text is the mean of its words' vectors),
nearest words, and analogies by 3CosAdd (Mikolov et al. 2013: b - a + c, nearest by cosine,
the three input words excluded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmlab.embed.base import Encoded, Encoder
from lmlab.errors import LmlabError


class WordVectors(Encoder):
    """Word vectors by word; texts are split on whitespace and words looked up as they are,
    else lower-cased (the run may have been trained lower-cased); unknown words are skipped,
    and a text with none gets the zero vector.

    Example:
        >>> wv = WordVectors.load("runs/w2v")
        >>> wv.analogy("man", "king", "woman")[0][0]
        'queen'
    """

    def __init__(self, words: list[str], matrix: np.ndarray, *, name: str = "word2vec") -> None:
        self.words, self.name = list(words), name
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.dimension, self.max_length = int(self.matrix.shape[1]), None
        norms = np.linalg.norm(self.matrix, axis=1, keepdims=True)
        self.unit = self.matrix / np.maximum(norms, 1e-12)

    @classmethod
    def load(cls, folder: str | Path) -> WordVectors:
        """The input vectors of a `lmlab train word2vec` run, with its vocabulary."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            words = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
            matrix = load_file(str(folder / "model.safetensors"))["input"]
        except (OSError, KeyError, ValueError) as e:
            raise LmlabError(f"cannot load word vectors from {folder}: {e}") from None
        words = [line.split("\t")[0] for line in words]
        if len(words) != len(matrix):
            raise LmlabError(
                f"{folder}: vocab.txt has {len(words)} words, the vectors {len(matrix)}"
            )
        return cls(words, matrix, name=folder.name)

    def lookup(self, word: str) -> int | None:
        """The row of `word`, as written or lower-cased; None when it is not in the vocabulary."""
        row = self.index.get(word)
        return row if row is not None else self.index.get(word.lower())

    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        out = np.zeros((len(texts), self.dimension), np.float32)
        n_tokens = 0
        for i, text in enumerate(texts):
            rows = [r for r in map(self.lookup, text.split()) if r is not None]
            n_tokens += len(rows)
            if rows:
                out[i] = self.matrix[rows].mean(axis=0)
        return Encoded(out, n_tokens=n_tokens)

    def rows(self, words: list[str]) -> list[int]:
        """The rows of `words`; a one-line error naming those not in the vocabulary."""
        rows = [self.lookup(w) for w in words]
        missing = [w for w, r in zip(words, rows, strict=True) if r is None]
        if missing:
            raise LmlabError(f"not in the vocabulary of {self.name}: {', '.join(missing)}")
        return rows  # type: ignore[return-value]

    def nearest(self, query: np.ndarray, exclude: list[int], topn: int) -> list[tuple[str, float]]:
        """The `topn` words whose vectors are nearest `query` by cosine, `exclude` left out."""
        sims = self.unit @ (query / max(float(np.linalg.norm(query)), 1e-12))
        sims[exclude] = -np.inf
        top = np.argsort(-sims, kind="stable")[:topn]
        return [(self.words[i], float(sims[i])) for i in top]

    def most_similar(self, word: str, topn: int = 10) -> list[tuple[str, float]]:
        """The words nearest `word` by cosine."""
        (row,) = self.rows([word])
        return self.nearest(self.unit[row], [row], topn)

    def analogy(self, a: str, b: str, c: str, topn: int = 1) -> list[tuple[str, float]]:
        """a is to b as c is to ?: the words nearest b - a + c (3CosAdd, unit vectors), the
        three inputs excluded."""
        rows = self.rows([a, b, c])
        query = self.unit[rows[1]] - self.unit[rows[0]] + self.unit[rows[2]]
        return self.nearest(query, rows, topn)


def load_run_vectors(folder: Path, **options) -> WordVectors:
    """The encoder of a word2vec run directory (the run registry's loader)."""
    return WordVectors.load(folder)
