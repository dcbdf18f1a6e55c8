"""Nearest-neighbour search over texts and their vectors, saved to and loaded from a folder.

Exact search is one matrix product (vectors are L2-normalized, so a dot product is the
cosine) and a partial sort: fast enough for a few hundred thousand texts. `approximate=True`
uses an HNSW graph (hnswlib, when installed) for larger collections.
Folder: index.json (model, dimension, count), vectors.npy, texts.jsonl (id and text per line),
and for an approximate index hnsw.bin, its graph (hnswlib's own format), so loading does not
rebuild it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmlab.deprecation import renamed_kwargs
from lmlab.embed.base import Encoder, finish
from lmlab.embed.load import load_encoder
from lmlab.errors import LmlabError
from lmlab.home import atomic_dir

INDEX_FILE = "index.json"
GRAPH_FILE = "hnsw.bin"


@dataclass
class Hit:
    """One search result: the text's id, the text, its cosine similarity to the query."""

    id: str
    text: str
    score: float


class VectorIndex:
    """Texts and their unit vectors under one encoder; `search` returns the k most similar.

    Args:
        model: the encoder (or its name or path) that embeds added texts and queries; called
            `model` as in `encode`, `embed_file` and OpenAI's embeddings API (`encoder=` is
            deprecated).
        approximate: search an HNSW graph (needs `pip install hnswlib`) instead of every vector.

    Example:
        >>> index = VectorIndex("all-minilm-l6-v2")
        >>> index.add(["The cat sat on the mat.", "Stocks fell sharply today."])
        >>> index.search("markets", k=1)[0].text
        'Stocks fell sharply today.'
        >>> index.save("my-index")
    """

    @renamed_kwargs(encoder="model")
    def __init__(self, model: Encoder | str | Path = "all-minilm-l6-v2", *, approximate=False):
        self.encoder = load_encoder(model)
        self.approximate = approximate
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.vectors = np.zeros((0, self.encoder.dimension), np.float32)
        self._graph = None  # the HNSW graph, built on first approximate search

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        name = self.encoder.spec or self.encoder.name
        return f"VectorIndex({name!r}, texts={len(self)}, approximate={self.approximate})"

    def add(
        self,
        texts: list[str],
        vectors: np.ndarray | None = None,
        ids: list[str] | None = None,
        *,
        batch_size: int = 32,
    ) -> VectorIndex:
        """Add texts (embedded here unless their `vectors` are given); ids default to 0, 1, ..."""
        texts = list(texts)
        if vectors is None:
            vectors = self.encoder.encode(texts, batch_size=batch_size)
        vectors = np.atleast_2d(np.asarray(vectors, np.float32))
        if len(texts) == 0:
            return self
        if vectors.shape != (len(texts), self.encoder.dimension):
            raise LmlabError(
                f"expected {len(texts)} vectors of size {self.encoder.dimension}, "
                f"got an array of shape {vectors.shape}"
            )
        if ids is None:
            ids = [str(i) for i in range(len(self), len(self) + len(texts))]
        elif len(ids) != len(texts):
            raise LmlabError("give one id per text", param="ids")
        self.ids += [str(i) for i in ids]
        self.texts += texts
        self.vectors = np.concatenate([self.vectors, finish(vectors, None, True)])
        self._graph = None
        return self

    def search(self, query: str | np.ndarray, k: int = 5) -> list[Hit]:
        """The k texts most similar to `query` (a text or a vector), most similar first."""
        if k < 1:
            raise LmlabError("k must be at least 1", param="k")
        if len(self) == 0:
            return []
        q = self.encoder.encode(query) if isinstance(query, str) else np.asarray(query)
        q = finish(np.atleast_2d(q.astype(np.float32)), None, True)[0]
        if q.shape[0] != self.encoder.dimension:
            raise LmlabError(f"the query vector must have {self.encoder.dimension} components")
        k = min(k, len(self))
        if self.approximate:
            rows, scores = self._approximate(q, k)
        else:
            scores_all = self.vectors @ q  # cosine: every row and q are unit vectors
            rows = np.argpartition(-scores_all, k - 1)[:k]
            rows = rows[np.argsort(-scores_all[rows], kind="stable")]
            scores = scores_all[rows]
        pairs = zip(rows, scores, strict=True)
        return [Hit(self.ids[r], self.texts[r], float(s)) for r, s in pairs]

    def _approximate(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        graph = self._hnsw()
        graph.set_ef(max(50, 2 * k))
        rows, distances = graph.knn_query(q, k=k)
        return rows[0], 1 - distances[0]  # hnswlib's "ip" distance is 1 - dot

    def _hnsw(self):
        """The HNSW graph over every vector (inner product), built on first use."""
        if self._graph is None:
            graph = _new_graph(self.encoder.dimension)
            graph.init_index(max_elements=len(self), ef_construction=200, M=16)
            graph.add_items(self.vectors, np.arange(len(self)))
            self._graph = graph
        return self._graph

    def save(self, folder: str | Path) -> Path:
        """Write the index to `folder` in one atomic step."""
        folder = Path(folder)
        with atomic_dir(folder, replaces=INDEX_FILE) as tmp:
            meta = {
                "model": self.encoder.name,
                "spec": self.encoder.spec or self.encoder.name,
                "dimension": self.encoder.dimension,
                "count": len(self),
                "approximate": self.approximate,
            }
            (tmp / INDEX_FILE).write_text(json.dumps(meta, indent=2))
            np.save(tmp / "vectors.npy", self.vectors)
            with open(tmp / "texts.jsonl", "w", encoding="utf-8") as f:
                for i, t in zip(self.ids, self.texts, strict=True):
                    f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
            if self.approximate and len(self):
                self._hnsw().save_index(str(tmp / GRAPH_FILE))
        return folder

    @classmethod
    @renamed_kwargs(encoder="model")
    def load(cls, folder: str | Path, model: Encoder | str | Path | None = None) -> VectorIndex:
        """Read an index folder; its encoder is loaded by the name saved with it, unless given.

        A given `model` must be the one the index was built with (same name and dimension).
        """
        folder = Path(folder)
        try:
            meta = json.loads((folder / INDEX_FILE).read_text())
            vectors = np.load(folder / "vectors.npy")
            lines = (folder / "texts.jsonl").read_text(encoding="utf-8").splitlines()
            rows = [json.loads(line) for line in lines]
        except (OSError, ValueError) as e:
            raise LmlabError(f"{folder} is not an lmlab index (lmlab index build): {e}") from None
        index = cls(model if model is not None else meta.get("spec", meta["model"]))
        index.approximate = bool(meta.get("approximate", False))
        if index.encoder.name != meta["model"] or index.encoder.dimension != meta["dimension"]:
            raise LmlabError(
                f"{folder} was built with {meta['model']} ({meta['dimension']}-d), not "
                f"{index.encoder.name} ({index.encoder.dimension}-d): rebuild it or use that model",
                param="model",
            )
        if vectors.shape != (len(rows), meta["dimension"]):
            raise LmlabError(f"{folder} is damaged: vectors and texts do not match; rebuild it")
        index.ids = [str(r["id"]) for r in rows]
        index.texts = [r["text"] for r in rows]
        index.vectors = vectors.astype(np.float32)
        if index.approximate and (folder / GRAPH_FILE).is_file():  # older folders: rebuilt
            index._graph = _new_graph(meta["dimension"])
            index._graph.load_index(str(folder / GRAPH_FILE), max_elements=len(rows))
            if index._graph.get_current_count() != len(rows):
                raise LmlabError(f"{folder} is damaged: graph and texts do not match; rebuild it")
        return index


def _new_graph(dimension: int):
    try:
        import hnswlib
    except ImportError:
        raise LmlabError("approximate search needs hnswlib: pip install hnswlib") from None
    return hnswlib.Index(space="ip", dim=dimension)
