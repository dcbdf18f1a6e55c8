"""Embedding a whole file: txt (one text per line), CSV, JSONL or Parquet in; .npy or .parquet out.

The input is streamed: read in chunks of a few thousand texts (text files line by line, CSV and
JSONL record by record, Parquet one row group at a time), each chunk embedded in batches of
similar length and saved under a hidden `.OUT.partial/` folder beside the output as it
completes; a run that is interrupted and started again with the same input and options skips
the chunks already done (each chunk's token counts are kept beside its vectors, so the report
covers the whole file). The output appears only at the end, in one rename: vectors in OUT.npy
with their ids in OUT.ids.json, or one Parquet table with the columns id, text and embedding.
Memory holds one chunk of texts at a time (and the ids, for .npy output).
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmlab import progress as progress_report
from lmlab.embed.base import Encoder
from lmlab.embed.fast import describe
from lmlab.embed.load import load_encoder
from lmlab.errors import LmlabError
from lmlab.home import atomic_file, atomic_write_text
from lmlab.text.files import open_text

DTYPES = {"float32": np.float32, "float16": np.float16}


def read_texts(
    path: str | Path, column: str | None = None, *, label_column: str | None = None
) -> list[tuple[str, str]] | list[tuple[str, str, str]]:
    """(id, text) pairs of a file; ids are an `id` column when there is one, else line numbers.

    Args:
        path: .txt (every non-blank line), .csv/.tsv, .jsonl or .parquet; or a folder of
            images (their paths, for an encoder of images such as a CLIP-style run).
        column: the text column of a table (default "text").
        label_column: also return this column of a table: (id, text, label) triples.
    """
    rows = list(iter_texts(path, column, label_column=label_column))
    if not rows:
        raise LmlabError(f"{path} has no text to embed", param="file")
    return rows


def iter_texts(
    path: str | Path, column: str | None = None, *, label_column: str | None = None
) -> Iterator[tuple[str, ...]]:
    """The rows of `read_texts`, read as they are needed (a file larger than memory is fine):
    text files line by line, CSV and JSONL record by record, Parquet one row group at a time."""
    path = Path(path)
    if path.is_dir() and label_column is None:  # a folder of images: (file name, its path),
        from lmlab.images.files import image_files  # which an image encoder reads as the image

        return iter([(p.name, str(p)) for p in image_files(path)])
    if not path.is_file():
        raise LmlabError(f"no such file: {path}", param="file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".jsonl", ".parquet"):
        records, names = _records(path, suffix)
        column = column or "text"
        for wanted in (column, label_column):
            if wanted is not None and names is not None and wanted not in names:
                raise LmlabError(_no_column(path, wanted, names), param="column")
        return _table_rows(path, records, column, label_column)
    if label_column is not None:
        raise LmlabError("a label column needs a table (CSV, JSONL or Parquet)", param="column")
    return _lines(path)


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    with open_text(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                yield str(i), line.rstrip("\r\n")


# A table's records come with their place in the file ("line 7"; Parquet: "row 7"), so that
# a bad cell can be pointed at.
Records = Iterator[tuple[str, dict]]


def _records(path: Path, suffix: str) -> tuple[Records, list[str] | None]:
    """The records of a table, lazily, and its column names (None for JSONL: known at the end)."""
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)

        def groups() -> Records:
            rows = itertools.count(1)
            for g in range(table.num_row_groups):  # one row group in memory at a time
                for record in table.read_row_group(g).to_pylist():
                    yield f"row {next(rows)}", record

        return groups(), table.schema_arrow.names
    if suffix == ".jsonl":

        def objects() -> Records:
            with open_text(path) as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            record = json.loads(line)
                        except ValueError as e:
                            raise LmlabError(f"{path} line {n} is not valid JSON: {e}") from None
                        if not isinstance(record, dict):
                            raise LmlabError(f"{path} line {n} is not a JSON object", param="file")
                        yield f"line {n}", record

        return objects(), None
    # A TSV has no quoting (IANA text/tab-separated-values: a field holds no tab or newline),
    # so a sentence that opens with a quotation mark stays one field: read as CSV quoting, the
    # quote would swallow the tab after it and the next field (273 pairs of en-es/train.tsv).
    dialect = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if suffix == ".tsv" else {}
    with open_text(path, newline="") as f:
        names = next(csv.reader(f, **dialect), [])

    def dicts() -> Records:
        with open_text(path, newline="") as f:
            reader = csv.DictReader(f, **dialect)
            for record in reader:
                yield f"line {reader.line_num}", record

    return dicts(), names


def _table_rows(
    path: Path, records: Records, column: str, label_column: str | None
) -> Iterator[tuple[str, ...]]:
    seen: set[str] = set()  # JSONL: the keys met, to name a column no record has
    for i, (place, r) in enumerate(records, 1):
        seen.update(r)
        text = text_cell(path, place, column, r.get(column))
        if text is not None:
            key = r.get("id")
            key = str(i) if key is None or str(key).strip() == "" else str(key)
            yield (key, text) if label_column is None else (key, text, str(r.get(label_column)))
    for wanted in (column, label_column):
        if wanted is not None and seen and wanted not in seen:
            raise LmlabError(_no_column(path, wanted, sorted(seen)), param="column")


def text_cell(path: Path, place: str, column: str, value: object) -> str | None:
    """A table cell as a text: None when it is empty (null, or blank); a list or an object
    (JSON, Parquet) is an error naming its line, rather than its Python repr embedded."""
    if isinstance(value, list | tuple | dict):
        kind = "an object" if isinstance(value, dict) else "a list"
        raise LmlabError(
            f"{path.name} {place}: the text in column {column!r} is {kind}; it must be a string",
            param="column",
        )
    if value is None or not str(value).strip():
        return None
    return str(value)


def _no_column(path: Path, wanted: str, names: list[str]) -> str:
    return f"{path.name} has no column {wanted!r} (columns: {', '.join(names) or 'none'})"


@dataclass
class TableFile:
    """A whole table read into memory: its columns, its records and where each one is."""

    names: list[str]
    records: list[dict]
    places: list[str]  # "line 7" ("row 7" in Parquet), one per record: for error messages


def read_table(path: Path) -> TableFile:
    """The column names, rows (as dicts) and row places of a whole .csv, .tsv, .jsonl or
    .parquet file."""
    records, names = _records(path, path.suffix.lower())
    pairs = list(records)
    rows = [record for _, record in pairs]
    names = names if names is not None else sorted({k for r in rows for k in r})
    return TableFile(names, rows, [place for place, _ in pairs])


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

    The input is read one chunk at a time (texts sorted by length within a chunk), so a file
    larger than memory can be embedded; each chunk is saved as it completes, and a run started
    again after an interruption skips the chunks already done.

    Args:
        path: the input (see read_texts).
        out: a .npy or .parquet path.
        model: encoder spec or loaded encoder.
        column: text column of a table.
        dimensions: keep the first k components (re-normalized).
        dtype: float32, or float16 for half the disk space.
        chunk_size: texts per saved chunk (the unit of reading and of resuming).
        progress: report progress to the display lmlab.progress has installed (the CLI's bar).

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
    chunks = _chunked(iter_texts(path, column), chunk_size)
    first = next(chunks, None)
    if first is None:
        raise LmlabError(f"{path} has no text to embed", param="file")
    encoder = load_encoder(model)
    encoder._check(batch_size, dimensions)  # fail before any work
    partial = out.with_name(f".{out.name}.partial")
    fingerprint = _fingerprint(Path(path), encoder, column, dimensions, dtype, chunk_size)
    _prepare(partial, fingerprint)
    count = resumed = n_tokens = n_truncated = 0
    total = _estimated_rows(Path(path))
    with (
        progress_report.task(total, unit="texts", desc="embedding", progress=progress) as advance,
        _output(out) as write,
    ):
        for c, part in enumerate(itertools.chain([first], chunks)):
            chunk_path = partial / f"chunk_{c:06d}.npy"
            stats = _chunk_stats(chunk_path)
            if stats is not None:
                resumed += 1
            else:
                result = encoder.encode_with_stats(
                    [row[1] for row in part], batch_size=batch_size, dimensions=dimensions
                )
                stats = {"n_tokens": int(result.n_tokens), "n_truncated": int(result.n_truncated)}
                with atomic_file(chunk_path) as tmp:
                    np.save(tmp, result.vectors.astype(DTYPES[dtype]))
                # written last: a chunk is done when its counts are there
                atomic_write_text(chunk_path.with_suffix(".json"), json.dumps(stats))
            n_tokens += stats["n_tokens"]
            n_truncated += stats["n_truncated"]
            dimension = write(part, chunk_path)
            count += len(part)
            advance(len(part))
    shutil.rmtree(partial, ignore_errors=True)
    return EmbedReport(str(out), count, dimension, dtype, n_tokens, n_truncated, resumed)


def _chunk_stats(chunk_path: Path) -> dict | None:
    """The token counts of a chunk an earlier run finished (beside its vectors, so a resumed
    run reports the whole file's), or None if it is not done (or is from an older lmlab)."""
    try:
        stats = json.loads(chunk_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return stats if chunk_path.is_file() else None


def _chunked(rows: Iterator[tuple[str, ...]], size: int) -> Iterator[list[tuple[str, ...]]]:
    while part := list(itertools.islice(rows, size)):
        yield part


def _estimated_rows(path: Path) -> int:
    """Rows of a Parquet file (its metadata); lines of any other file (for the progress bar);
    the entries of a folder of images."""
    if path.is_dir():
        return sum(1 for _ in path.iterdir())
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            lines += block.count(b"\n")
    return lines


@contextmanager
def _output(out: Path) -> Iterator[Callable[[list, Path], int]]:
    """A writer taking each chunk's rows and saved vectors in order; the output file appears,
    complete, when the block ends without an error (Parquet: one row group per chunk)."""
    if out.suffix == ".npy":
        ids: list[str] = []
        parts: list[Path] = []

        def add_npy(rows: list, vectors_path: Path) -> int:
            ids.extend(row[0] for row in rows)
            parts.append(vectors_path)
            return int(np.load(vectors_path, mmap_mode="r").shape[1])

        yield add_npy
        first = np.load(parts[0], mmap_mode="r")
        with atomic_file(out) as tmp:
            target = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=first.dtype, shape=(len(ids), first.shape[1])
            )
            start = 0
            for part in parts:  # one chunk in memory at a time
                vectors = np.load(part)
                target[start : start + len(vectors)] = vectors
                start += len(vectors)
            target.flush()
            del target
        atomic_write_text(out.with_suffix(".ids.json"), json.dumps(ids, ensure_ascii=False))
        return
    import pyarrow.parquet as pq

    with atomic_file(out) as tmp:
        writer = None
        try:

            def add_parquet(rows: list, vectors_path: Path) -> int:
                nonlocal writer
                vectors = np.load(vectors_path)
                table = embedding_table([row[0] for row in rows], [row[1] for row in rows], vectors)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                return int(vectors.shape[1])

            yield add_parquet
        finally:
            if writer is not None:
                writer.close()


def embedding_table(ids: list, texts: list[str], vectors: np.ndarray) -> Any:
    """The Parquet table of `lmlab embed` (and of its --ray form): id, text and embedding (a
    fixed-size list of the vector's numbers)."""
    import pyarrow as pa

    flat = pa.array(vectors.reshape(-1))
    return pa.table(
        {
            "id": ids,
            "text": texts,
            "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    )


def _fingerprint(path: Path, encoder: Encoder, column, dimensions, dtype, chunk_size) -> dict:
    stat = path.stat()
    return {
        "input": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "model": encoder.spec or encoder.name,
        "runs_on": describe(encoder),  # int8 and float32 chunks are not mixed on resuming
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
