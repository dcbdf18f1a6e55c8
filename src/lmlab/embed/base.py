"""The Encoder interface: text -> float32 vectors, one row per text.

Every encoder (bag of words, TF-IDF, static token embeddings, a pooled transformer, a model
trained here) implements `_encode_batch`; `encode` adds what is the same for all of them:
single strings, empty lists, OpenAI-style `dimensions` truncation and L2 normalization.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from lmlab.deprecation import renamed_kwargs
from lmlab.errors import LmlabError
from lmlab.text.tokenizer import Tokenizer


@dataclass
class Encoded:
    """Vectors plus what it took to make them (the server reports `usage` from this)."""

    vectors: np.ndarray  # float32 (n, d), or (d,) for a single string
    n_tokens: int = 0  # input tokens actually read (after truncation, with special tokens)
    n_truncated: int = 0  # texts cut to the model's window

    def __repr__(self) -> str:  # the shape, not the numbers
        shape = tuple(np.shape(self.vectors))
        return (
            f"Encoded(vectors=array{shape}, n_tokens={self.n_tokens}, "
            f"n_truncated={self.n_truncated})"
        )


class Encoder(ABC):
    """A function from text to a vector.

    Subclasses set `name`, `dimension`, `max_length`, `tokenizer` and implement
    `_encode_batch(texts) -> Encoded` (raw, unnormalized rows) and, when they read token ids,
    `_encode_ids(ids) -> Encoded`.
    """

    name: str = "encoder"
    spec: str | None = None  # the name or path load_encoder read it from
    dimension: int
    max_length: int | None = None  # tokens per text; longer texts are truncated (and counted)
    tokenizer: Tokenizer | None = None

    @abstractmethod
    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        """Unnormalized float32 vectors (n, dimension) of non-empty `texts`."""

    def _encode_ids(self, ids: list[list[int]], batch_size: int) -> Encoded:
        raise LmlabError(f"{self.name} does not read token ids; pass texts", param="input")

    def _pool_all(self, ids: list[list[int]], batch_size: int, truncated: int) -> Encoded:
        """Pool rows of token ids in batches of similar length (little padding), in input order.

        For encoders that read token ids and implement `_pool_batch(rows) -> (len(rows), d)`.
        """
        out = np.empty((len(ids), self.dimension), np.float32)
        order = np.argsort([-len(row) for row in ids], kind="stable")  # longest first
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._pool_batch([ids[i] for i in rows])
        return Encoded(out, n_tokens=sum(map(len, ids)), n_truncated=truncated)

    def _pool_batch(self, rows: list[list[int]]) -> np.ndarray:
        raise NotImplementedError

    @renamed_kwargs(normalize="normalize_embeddings")
    def encode(
        self,
        texts: str | list[str],
        *,
        batch_size: int = 32,
        dimensions: int | None = None,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        """Embed `texts`: a float32 array (n, d), or (d,) for one string.

        Args:
            texts: a string or a list of strings. An empty string gets the vector the model
                gives its empty input (for transformers, the pooled `[CLS] [SEP]` states).
            batch_size: texts per forward pass.
            dimensions: keep the first k components (and re-normalize), as OpenAI's
                `dimensions` does for its text-embedding-3 models.
            normalize_embeddings: L2-normalize each row (cosine similarity becomes a dot
                product); sentence-transformers' name (`normalize=` is deprecated).

        Example:
            >>> enc = lmlab.load_encoder("all-minilm-l6-v2")
            >>> enc.encode(["bank", "river"]).shape
            (2, 384)
        """
        return self.encode_with_stats(
            texts,
            batch_size=batch_size,
            dimensions=dimensions,
            normalize_embeddings=normalize_embeddings,
        ).vectors

    @renamed_kwargs(normalize="normalize_embeddings")
    def encode_with_stats(
        self,
        texts: str | list[str],
        *,
        batch_size: int = 32,
        dimensions: int | None = None,
        normalize_embeddings: bool = True,
    ) -> Encoded:
        """As `encode`, returning also the number of tokens read and of texts truncated."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        if not all(isinstance(t, str) for t in items):
            raise LmlabError("texts must be strings", param="input")
        self._check(batch_size, dimensions)
        if not items:
            return Encoded(np.zeros((0, dimensions or self.dimension), np.float32))
        out = self._encode_batch(items, batch_size)
        out.vectors = finish(out.vectors, dimensions, normalize_embeddings)
        if single:
            out.vectors = out.vectors[0]
        return out

    @renamed_kwargs(normalize="normalize_embeddings")
    def encode_token_ids(
        self,
        ids: list[list[int]],
        *,
        batch_size: int = 32,
        dimensions: int | None = None,
        normalize_embeddings: bool = True,
    ) -> Encoded:
        """Embed pre-tokenized inputs (OpenAI accepts token-id arrays); ids exclude [CLS]/[SEP]."""
        self._check(batch_size, dimensions)
        if not ids:
            return Encoded(np.zeros((0, dimensions or self.dimension), np.float32))
        out = self._encode_ids([list(map(int, row)) for row in ids], batch_size)
        out.vectors = finish(out.vectors, dimensions, normalize_embeddings)
        return out

    def _check(self, batch_size: int, dimensions: int | None) -> None:
        if batch_size < 1:
            raise LmlabError("batch_size must be at least 1", param="batch_size")
        if dimensions is not None and not 1 <= dimensions <= self.dimension:
            raise LmlabError(
                f"dimensions must be between 1 and {self.dimension} for {self.name}, "
                f"not {dimensions}",
                param="dimensions",
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dimension={self.dimension})"


def finish(vectors: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    """Keep the first `dimensions` components, then L2-normalize rows (a zero row stays zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    if dimensions is not None:
        v = v[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        v = v / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(v, dtype=np.float32)
