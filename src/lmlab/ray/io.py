"""Reading inputs into Ray Datasets with an id column, and writing results as Parquet folders.

Inputs are read by Ray Data's own readers, so anything pyarrow or fsspec can open works (local
paths, folders, `s3://`, `gs://`, `https://`): text (one document per line), CSV, TSV, JSONL
and Parquet. Every row carries an `id`: the input's own `id` column when it has one (streamed
as it is read), else the row's place in the input (the line number of a text file, the record
number of a table, from 1; as `lmlab embed` numbers them). Numbering rows needs their order, so
an input without ids is read once into Ray's object store first (spilled to disk if large).

Reading and writing are I/O: their tasks ask Ray for no CPU, so an actor pool that holds every
core (the usual case: one encoder per core) cannot starve them into a deadlock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from lmlab.errors import LmlabError

ID = "id"
IO_TASK = {"num_cpus": 0}  # reading and writing wait on disks and networks, not on cores
FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}


def input_format(source: str) -> str:
    """The reader for a path or URL, by its ending (a local folder: by its files' endings)."""
    path = Path(source)
    if "://" not in source and path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.name[0] not in "._"]
        endings = {p.suffix.lower() for p in files}
        known = {FORMATS[e] for e in endings if e in FORMATS}
        if len(known) != 1:
            raise LmlabError(
                f"{source}: a folder to read must hold files of one kind "
                f"({', '.join(sorted(FORMATS))}); found {', '.join(sorted(endings)) or 'none'}",
                param="file",
            )
        return known.pop()
    suffix = os.path.splitext(source.rstrip("/"))[1].lower()
    return FORMATS.get(suffix, "text")  # any other file: one document per line, as lmlab embed


def read_input(source: Any, ray: Any, block_rows: int = 1024) -> Any:
    """A Ray Dataset of `source` (a path, URL, or a Dataset already), with an `id` column (an
    input numbered here comes in blocks of `block_rows` rows: the unit one actor takes)."""
    ordered(ray)
    if isinstance(source, ray.data.Dataset):
        ds = source
    else:
        source = str(source)
        if "://" not in source and not Path(source).exists():
            raise LmlabError(f"no such file: {source}", param="file")
        ds = _read(source, input_format(source), ray)
    ds.context.execution_options.preserve_order = True  # a Dataset the caller made, too
    names = columns(ds, source)
    return ds if ID in names else _numbered(ds, ray, block_rows)


def _read(source: str, kind: str, ray: Any) -> Any:
    args: dict[str, Any] = dict(IO_TASK)
    try:
        if kind == "text":  # blank lines kept here, so that ids are line numbers
            return ray.data.read_text(source, drop_empty_lines=False, **args)
        if kind in ("csv", "tsv"):
            if kind == "tsv":
                import pyarrow.csv as pacsv

                args["parse_options"] = pacsv.ParseOptions(delimiter="\t", quote_char=False)
            return ray.data.read_csv(source, **args)
        if kind == "jsonl":
            return ray.data.read_json(source, lines=True, **args)
        return ray.data.read_parquet(source, **args)
    except LmlabError:
        raise
    except Exception as e:  # pyarrow, fsspec and Ray each raise their own kinds
        raise LmlabError(f"cannot open {source}: {one_line(e)}", param="file") from None


def columns(ds: Any, source: Any) -> list[str]:
    """The column names of a dataset (reading its first block if it must)."""
    try:
        schema = ds.schema()
    except Exception as e:
        raise LmlabError(f"cannot read {source}: {one_line(e)}", param="file") from None
    if schema is None:
        raise LmlabError(f"{source} has no rows", param="file")
    return list(schema.names)


def require_column(ds: Any, source: Any, column: str) -> None:
    """A one-line error when the dataset has no such column (before any model is loaded)."""
    names = columns(ds, source)
    if column not in names:
        name = "the dataset" if hasattr(source, "schema") else Path(str(source)).name
        raise LmlabError(
            f"{name} has no column {column!r} (columns: {', '.join(names)})", param="column"
        )


def _numbered(ds: Any, ray: Any, block_rows: int) -> Any:
    """`ds` with an `id` column: each row's place in it, from 1 (the blocks are read in order
    and kept, then cut into slices of `block_rows` rows numbered from the rows before them)."""
    import pyarrow as pa

    @ray.remote(num_cpus=0)
    def rows(table: Any) -> int:
        return table.num_rows

    @ray.remote(num_cpus=0)
    def number(table: Any, start: int, length: int, first: int) -> Any:
        ids = pa.array(range(first, first + length), type=pa.int64())
        return table.slice(start, length).add_column(0, ID, ids)

    blocks = ds.to_arrow_refs()
    counts = ray.get([rows.remote(b) for b in blocks])
    refs, first = [], 1
    for block, count in zip(blocks, counts, strict=True):
        for start in range(0, count, block_rows):
            length = min(block_rows, count - start)
            refs.append(number.remote(block, start, length, first))
            first += length
    return ray.data.from_arrow_refs(refs)


def ordered(ray: Any) -> None:
    """Ray Data keeps the rows in order from here on: datasets made after this call carry it
    (a Dataset copies the current DataContext when it is made)."""
    ray.data.DataContext.get_current().execution_options.preserve_order = True


def write_parquet(ds: Any, out: str | Path) -> int:
    """Write `ds` as a folder of Parquet files, in order; return the number of rows.

    The files go into a hidden temporary folder beside OUT, which becomes OUT in one rename
    when every row is written: a run that fails leaves no output that looks complete.
    """
    out = Path(os.path.abspath(out))
    if out.exists() and not (out.is_dir() and _written_here(out)):
        raise LmlabError(
            f"{out} exists and is not an earlier output of --ray: choose another --out",
            param="out",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # One writer at a time: a block is written in a fraction of a second, and each
        # concurrent write task would start a Python worker of its own (seconds of CPU taken
        # from the actors: on 2 cores, 20,000 texts took 60-68 s with them, 49 s without).
        ds.write_parquet(str(tmp), ray_remote_args=IO_TASK, concurrency=1)
        files = sorted(tmp.glob("*.parquet"))
        rows = _rows(files)
        if out.exists():
            old = out.with_name(f".{out.name}.old.{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _written_here(folder: Path) -> bool:
    """An empty folder, or one holding only Parquet files (an earlier output to replace)."""
    return all(p.suffix == ".parquet" for p in folder.iterdir())


def _rows(files: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def read_parquet_folder(folder: str | Path) -> Any:
    """A folder written by `write_parquet` as one pyarrow Table: its files in name order, which
    holds the rows in the input's order."""
    import pyarrow.parquet as pq

    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        raise LmlabError(f"{folder} holds no Parquet files", param="file")
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f) for f in files])


def one_line(error: BaseException) -> str:
    """An exception's message on one line (Ray's and pyarrow's can run to several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
