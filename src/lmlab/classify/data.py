"""Labelled tables in: CSV, TSV, JSONL or Parquet (by extension) -> texts and string labels.

Every problem a researcher's spreadsheet can have is a one-line error that says what to fix:
a missing file, a column that is not there (the ones that are, listed), rows without a label
or without a text (how many, and the first few), a "text" column that holds numbers, a single
class. When the columns are not named, common names (`text`, `sentence`, `review`, ...;
`label`, `class`, `stars`, ...) are picked if that is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmlab.embed.batch import TableFile, read_table, text_cell
from lmlab.errors import LmlabError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
TEXT_NAMES = ("text", "sentence", "review", "document", "content", "body", "tweet", "comment")
LABEL_NAMES = ("label", "labels", "class", "category", "sentiment", "stars", "rating", "target")
SHOWN_ROWS = 5  # row numbers quoted in an error


@dataclass
class Table:
    """The texts (and labels) of a data file, and which columns they came from."""

    texts: list[str]
    labels: list[str] | None
    text_col: str
    label_col: str | None
    guessed: list[str]  # "text" and/or "label": the columns picked by name, not given
    file: TableFile | None = None  # the whole table (predict keeps its id and label columns)


def read_labelled(
    path: str | Path, text_col: str | None = None, label_col: str | None = None
) -> Table:
    """Texts and their labels (as strings) from a table; the checks every fit needs.

    Args:
        path: a .csv, .tsv, .jsonl or .parquet file.
        text_col: the column with the texts (default: a common name such as `text` or
            `sentence`, when exactly one is present).
        label_col: the column with the labels (default: `label`, `class`, `stars`, ...).

    Example:
        >>> t = read_labelled("sst2/dev.tsv")    # columns sentence, label: both guessed
        >>> t.texts[0], t.labels[0]
        ("it 's a charming and often affecting journey . ", '1')
    """
    table, path = _open(path)
    names = table.names
    guessed = []
    if text_col is None:
        text_col = _guess(names, TEXT_NAMES, "text", path)
        guessed.append("text")
    if label_col is None:
        label_col = _guess([n for n in names if n != text_col], LABEL_NAMES, "label", path)
        guessed.append("label")
    _check_columns(path, names, text_col, label_col)
    texts = _texts(path, table, text_col)
    raw = _filled(path, table.records, label_col, "value in label column", "label_col")
    labels = [label_text(v) for v in raw]
    return Table(texts, labels, text_col, label_col, guessed, table)


def read_unlabelled(path: str | Path, text_col: str | None = None) -> Table:
    """Only the texts of a table (to predict); `labels` is None."""
    table, path = _open(path)
    guessed = []
    if text_col is None:
        text_col = _guess(table.names, TEXT_NAMES, "text", path)
        guessed.append("text")
    _check_columns(path, table.names, text_col)
    texts = _texts(path, table, text_col)
    return Table(texts, None, text_col, None, guessed, table)


def label_text(value: object) -> str:
    """A label as a string: 1, 1.0 and "1" are all "1" (files disagree on number types)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _open(path: str | Path) -> tuple[TableFile, Path]:
    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"no such file: {path}", param="file")
    if path.suffix.lower() not in SUFFIXES:
        raise LmlabError(
            f"{path.name}: a data file must end in {', '.join(SUFFIXES)}", param="file"
        )
    table = read_table(path)
    if not table.records:
        raise LmlabError(f"{path.name} has no rows", param="file")
    return table, path


def find_column(names: list[str], candidates: tuple[str, ...]) -> str | None:
    """The one column whose name is among `candidates` (case-insensitive), else None."""
    found = [n for n in names if n.strip().lower() in candidates]
    return found[0] if len(found) == 1 else None


def _guess(names: list[str], candidates: tuple[str, ...], what: str, path: Path) -> str:
    found = find_column(names, candidates)
    if found is not None:
        return found
    flag = f"--{what}-col"
    raise LmlabError(
        f"{path.name}: cannot tell which column holds the {what}s; pass {flag} "
        f"(columns: {', '.join(names) or 'none'})",
        param=f"{what}_col",
    )


def _check_columns(path: Path, names: list[str], *wanted: str) -> None:
    for column in wanted:
        if column not in names:
            raise LmlabError(
                f"{path.name} has no column {column!r} (columns: {', '.join(names) or 'none'})",
                param="column",
            )


def _filled(path: Path, records: list[dict], column: str, what: str, param: str) -> list:
    """The column's values; a clear error naming the rows where it is empty."""
    values = [r.get(column) for r in records]
    missing = [i for i, v in enumerate(values, 1) if v is None or str(v).strip() == ""]
    if missing:
        raise LmlabError(
            f"{path.name}: {len(missing)} rows have no {what} {column!r} "
            f"(rows {_rows(missing)}); fill them in or drop those rows",
            param=param,
        )
    return values


def _texts(path: Path, table: TableFile, column: str) -> list[str]:
    for place, record in zip(table.places, table.records, strict=True):
        text_cell(path, place, column, record.get(column))  # a list or an object: an error
    values = _filled(path, table.records, column, "text in column", "text_col")
    if all(_is_number(v) for v in values):
        raise LmlabError(
            f"{path.name}: text column {column!r} holds numbers, not texts; "
            "pass the column with the documents as --text-col",
            param="text_col",
        )
    return [str(v) for v in values]


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def _rows(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:SHOWN_ROWS]))
    return shown + (", ..." if len(numbers) > SHOWN_ROWS else "")
