"""Embedding a whole file: txt (one text per line), CSV, JSONL or Parquet in; .npy or .parquet out.

Work is done in chunks of a few thousand texts, each saved under a hidden `.OUT.partial/`
folder beside the output as it completes; a run that is interrupted and started again with the
same input and options skips the chunks already done. The output appears only at the end, in
one rename: vectors in OUT.npy with their ids in OUT.ids.json, or one Parquet table with the
columns id, text and embedding.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lmlab.embed.base import Encoder
from lmlab.embed.load import load_encoder
from lmlab.errors import LmlabError
from lmlab.home import atomic_file, atomic_write_text

DTYPES = {"float32": np.float32, "float16": np.float16}


def read_texts(
    path: str | Path, column: str | None = None, *, label_column: str | None = None
) -> list[tuple[str, str]] | list[tuple[str, str, str]]:
    """(id, text) pairs of a file; ids are an `id` column when there is one, else line numbers.

    Args:
        path: .txt (every non-blank line), .csv/.tsv, .jsonl or .parquet.
        column: the text column of a table (default "text").
        label_column: also return this column of a table: (id, text, label) triples.
    """
    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"no such file: {path}", param="file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        rows = list(_table_rows(path, column or "text", label_column))
    elif label_column is not None:
        raise LmlabError("a label column needs a table (CSV, JSONL or Parquet)", param="column")
    else:
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = [(str(i), line.rstrip("\r\n")) for i, line in enumerate(f, 1) if line.strip()]
    if not rows:
        raise LmlabError(f"{path} has no text to embed", param="file")
    return rows


def _table_rows(path: Path, column: str, label_column: str | None) -> Iterator[tuple[str, ...]]:
    names, records = read_table(path)
    for wanted in (column, label_column):
        if wanted is not None and wanted not in names:
            raise LmlabError(
                f"{path.name} has no column {wanted!r} (columns: {', '.join(names) or 'none'})",
                param="column",
            )
    for i, r in enumerate(records, 1):
        text = r.get(column)
        if text is not None and str(text).strip():
            key, text = str(r.get("id", i)), str(text)
            yield (key, text) if label_column is None else (key, text, str(r[label_column]))


def read_table(path: Path) -> tuple[list[str], list[dict]]:
    """(column names, rows as dicts) of a .csv, .tsv, .jsonl or .parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.column_names, table.to_pylist()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            try:
                records = [json.loads(line) for line in f if line.strip()]
            except ValueError as e:
                raise LmlabError(f"{path} is not valid JSONL: {e}") from None
        if not all(isinstance(r, dict) for r in records):
            raise LmlabError(f"{path}: every JSONL line must be an object", param="file")
        return sorted({k for r in records for k in r}), records
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
        records = list(reader)
        return list(reader.fieldnames or []), records


@dataclass
class EmbedReport:
    """What `embed_file` wrote."""

    out: str
    count: int
    dimension: int
    dtype: str
    n_tokens: int
    n_truncated: int
    resumed_chunks: int  # chunks found done from an interrupted run


def embed_file(
    path: str | Path,
    out: str | Path,
    *,
    model: str | Path | Encoder = "all-minilm-l6-v2",
    column: str | None = None,
    batch_size: int = 32,
    dimensions: int | None = None,
    dtype: str = "float32",
    chunk_size: int = 4096,
    progress: bool = True,
) -> EmbedReport:
    """Embed every text of a file into OUT.npy (+ OUT.ids.json) or OUT.parquet.

    Args:
        path: the input (see read_texts).
        out: a .npy or .parquet path.
        model: encoder spec or loaded encoder.
        column: text column of a table.
        dimensions: keep the first k components (re-normalized).
        dtype: float32, or float16 for half the disk space.
        chunk_size: texts per saved chunk (the unit of resuming).

    Example:
        >>> embed_file("speeches.csv", "speeches.parquet", column="text")
    """
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise LmlabError("the output must end in .npy or .parquet", param="out")
    if dtype not in DTYPES:
        raise LmlabError(f"dtype must be one of {', '.join(DTYPES)}", param="dtype")
    if chunk_size < 1:
        raise LmlabError("chunk_size must be at least 1", param="chunk_size")
    rows = read_texts(path, column)
    encoder = load_encoder(model)
    encoder._check(batch_size, dimensions)  # fail before any work
    partial = out.with_name(f".{out.name}.partial")
    fingerprint = _fingerprint(Path(path), encoder, column, dimensions, dtype, chunk_size)
    _prepare(partial, fingerprint)
    n_chunks = (len(rows) + chunk_size - 1) // chunk_size
    resumed = n_tokens = n_truncated = 0
    with tqdm(total=len(rows), unit="text", desc="embedding", disable=not progress) as bar:
        for c in range(n_chunks):
            part = rows[c * chunk_size : (c + 1) * chunk_size]
            chunk_path = partial / f"chunk_{c:06d}.npy"
            if chunk_path.is_file():
                resumed += 1
            else:
                result = encoder.encode_with_stats(
                    [t for _, t in part], batch_size=batch_size, dimensions=dimensions
                )
                with atomic_file(chunk_path) as tmp:
                    np.save(tmp, result.vectors.astype(DTYPES[dtype]))
                n_tokens += result.n_tokens
                n_truncated += result.n_truncated
            bar.update(len(part))
    vectors = np.concatenate([np.load(partial / f"chunk_{c:06d}.npy") for c in range(n_chunks)])
    _write(out, rows, vectors)
    shutil.rmtree(partial, ignore_errors=True)
    return EmbedReport(str(out), len(rows), vectors.shape[1], dtype, n_tokens, n_truncated, resumed)


def _fingerprint(path: Path, encoder: Encoder, column, dimensions, dtype, chunk_size) -> dict:
    stat = path.stat()
    return {
        "input": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "model": encoder.spec or encoder.name,
        "column": column,
        "dimensions": dimensions,
        "dtype": dtype,
        "chunk_size": chunk_size,
    }


def _prepare(partial: Path, fingerprint: dict) -> None:
    """Keep the chunks of an interrupted run with the same fingerprint; start afresh otherwise."""
    meta = partial / "meta.json"
    if partial.is_dir():
        try:
            if json.loads(meta.read_text()) == fingerprint:
                return
        except (OSError, ValueError):
            pass
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    atomic_write_text(meta, json.dumps(fingerprint, indent=2))


def _write(out: Path, rows: list[tuple[str, str]], vectors: np.ndarray) -> None:
    ids = [i for i, _ in rows]
    if out.suffix == ".npy":
        with atomic_file(out) as tmp:
            np.save(tmp, vectors)
        atomic_write_text(out.with_suffix(".ids.json"), json.dumps(ids, ensure_ascii=False))
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(vectors.reshape(-1))
    table = pa.table(
        {
            "id": ids,
            "text": [t for _, t in rows],
            "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    )
    with atomic_file(out) as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, texts, vectors) of a file written by `embed_file` (texts are the ids for .npy)."""
    path = Path(path)
    if path.suffix == ".npy":
        vectors = np.load(path)
        ids_path = path.with_suffix(".ids.json")
        ids = json.loads(ids_path.read_text()) if ids_path.is_file() else None
        ids = ids or [str(i) for i in range(len(vectors))]
        return ids, ids, vectors.astype(np.float32)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if "embedding" not in table.column_names:
        raise LmlabError(f"{path} has no embedding column (write it with lmlab embed)")
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    ids = [str(i) for i in table.column("id").to_pylist()]
    return ids, [str(t) for t in table.column("text").to_pylist()], vectors.astype(np.float32)
