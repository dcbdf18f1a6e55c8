"""Source-target pairs from a table (CSV, TSV, JSONL or Parquet, by extension).

The classifier's reader checks apply (classify/data.py): a missing file, a column that is not
there (the ones that are, listed), rows with an empty source or target (how many, which).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmlab.classify.data import _check_columns, _filled, _open
from lmlab.embed.batch import text_cell
from lmlab.errors import LmlabError


@dataclass
class Pairs:
    """The sources and targets of a table, and the columns they came from."""

    sources: list[str]
    targets: list[str]
    source_col: str
    target_col: str


def read_pairs(
    path: str | Path, source_col: str | None = None, target_col: str | None = None
) -> Pairs:
    """Sources and targets from two columns of a table.

    Args:
        path: a .csv, .tsv, .jsonl or .parquet file.
        source_col, target_col: the columns (default: a table's only two columns, in order).

    Example:
        >>> p = read_pairs("en-es/valid.tsv", "en", "es")
        >>> p.sources[1], p.targets[1]
        ('Iran nuke talks begin amid hopes of progress', 'Irán nuke las charlas empiezan ...')
    """
    table, path = _open(path)
    names = table.names
    if source_col is None or target_col is None:
        if len(names) != 2:
            raise LmlabError(
                f"{path.name}: name the source and target columns with --source-col and "
                f"--target-col (columns: {', '.join(names) or 'none'})",
                param="source_col",
            )
        source_col, target_col = source_col or names[0], target_col or names[1]
    if source_col == target_col:
        raise LmlabError(f"the source and target columns are both {source_col!r}")
    _check_columns(path, names, source_col, target_col)
    texts = []
    for column, side in ((source_col, "source"), (target_col, "target")):
        for place, record in zip(table.places, table.records, strict=True):
            text_cell(path, place, column, record.get(column))  # a list or an object: an error
        values = _filled(path, table.records, column, f"{side} text in column", f"{side}_col")
        texts.append([str(v) for v in values])
    return Pairs(texts[0], texts[1], source_col, target_col)
