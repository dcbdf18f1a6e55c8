"""The actors of lmlab's Ray pipelines: each loads its model once, then maps batches.

Ray Data builds an actor pool of one of these classes (`map_batches(Worker, ...)`); every actor
calls `__init__` once (the model load, seconds) and `__call__` per batch, a pyarrow Table of
rows in, a Table of results out. They call the same functions as the single-process commands,
so a row gets the same result on a cluster as on one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _texts(table: Any, column: str) -> list[str]:
    return ["" if t is None else str(t) for t in table.column(column).to_pylist()]


def _nonblank(table: Any, column: str) -> Any:
    """The rows whose text is not blank (as `lmlab embed` skips them)."""
    import pyarrow as pa

    keep = [bool(t.strip()) for t in _texts(table, column)]
    return table if all(keep) else table.filter(pa.array(keep))


class EmbedWorker:
    """Vectors of the texts in `column`: the table of `lmlab embed` (id, text, embedding)."""

    def __init__(
        self,
        model: str,
        column: str,
        batch_size: int,
        dimensions: int | None,
        dtype: str,
        backend: str,
        static: bool,
    ) -> None:
        from lmlab.embed.load import load_encoder

        self.encoder = load_encoder(model, static=static, backend=backend)
        self.column, self.batch_size, self.dimensions, self.dtype = (
            column,
            batch_size,
            dimensions,
            dtype,
        )

    def __call__(self, table: Any) -> Any:
        from lmlab.embed.batch import DTYPES, embedding_table

        table = _nonblank(table, self.column)
        texts = _texts(table, self.column)
        if not texts:
            vectors = np.zeros((0, self.encoder.dimension), DTYPES[self.dtype])
        else:
            result = self.encoder.encode_with_stats(
                texts, batch_size=self.batch_size, dimensions=self.dimensions
            )
            vectors = result.vectors.astype(DTYPES[self.dtype])
        return embedding_table(table.column("id"), texts, vectors)


class ClassifyWorker:
    """Every input column, then `predicted` and one p_<class> column per class."""

    def __init__(self, folder: str, column: str) -> None:
        from lmlab.classify.classifier import TextClassifier

        self.classifier = TextClassifier.load(folder)
        self.column = column

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        clf = self.classifier
        proba = clf.predict_proba(_texts(table, self.column))
        proba = proba.reshape(len(table), len(clf.classes_))
        labels = clf.classes_[proba.argmax(axis=1)] if len(proba) else []
        table = table.append_column("predicted", pa.array([str(x) for x in labels], pa.string()))
        for k, c in enumerate(clf.classes_):
            table = table.append_column(f"p_{c}", pa.array(proba[:, k].round(6), pa.float64()))
        return table


class ScoreWorker:
    """id, tokens, logprob (nats) and perplexity of each text (`lmlab score --per-line`)."""

    def __init__(self, model: str, backend: str, column: str, window: int, stride: int) -> None:
        from lmlab.models import load_lm

        self.lm = load_lm(model, backend=backend)
        self.column, self.window, self.stride = column, window, stride

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        from lmlab.lm_rows import score_texts

        table = _nonblank(table, self.column)
        scores = score_texts(
            self.lm, _texts(table, self.column), window=self.window, stride=self.stride
        )
        return pa.table({"id": table.column("id"), **scores})


class GenerateWorker:
    """id, the prompt, its completion and finish_reason (`lmlab generate --file`)."""

    def __init__(self, model: str, backend: str, column: str, options: dict[str, Any]) -> None:
        from lmlab.models import load_lm

        self.lm = load_lm(model, backend=backend)
        self.column, self.options = column, options

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        from lmlab.lm_rows import generate_texts

        table = _nonblank(table, self.column)
        prompts = _texts(table, self.column)
        answers = generate_texts(self.lm, prompts, **self.options)
        return pa.table({"id": table.column("id"), self.column: prompts, **answers})
