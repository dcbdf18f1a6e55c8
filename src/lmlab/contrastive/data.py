"""Reading what contrastive training and STS evaluation take.

sentences   one per line (blank lines skipped): unsupervised SimCSE.
pairs       a .tsv or .csv (tab or comma; an optional header row of column names):
              text1, text2                  positive pairs (in-batch negatives)
              text1, text2, hard negative   with a hard negative each
              text1, text2, score           scored pairs (CoSENT; any scale, only the order
                                            counts): the third column is a number on every row
            or the STS benchmark's own files (tab-separated: genre, file, year, id, score,
            sentence1, sentence2[, sources]; read with no quoting, as the texts hold raw
            quote characters).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from lmlab.errors import LmlabError

# Names a header row of a pairs file may use (a first row of only these is a header).
HEADER_NAMES = {"text1", "text2", "text", "sentence1", "sentence2", "sentence", "anchor",
                "positive", "negative", "hard_negative", "score", "label", "similarity",
                "query", "document", "premise", "hypothesis", "source", "target"}  # fmt: skip


@dataclass
class Pairs:
    """Rows of a pairs file: text1[i] with text2[i], and a hard negative or a score, if any."""

    text1: list[str]
    text2: list[str]
    negatives: list[str] | None = None
    scores: list[float] | None = None

    def __len__(self) -> int:
        return len(self.text1)


def _read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"{path} does not exist or is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise LmlabError(f"{path} is not UTF-8 text") from None


def read_sentences(path: str | Path) -> list[str]:
    """The non-blank lines of a text file, stripped; an error when there are fewer than two."""
    sentences = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if len(sentences) < 2:
        raise LmlabError(
            f"{path} holds {len(sentences)} sentence(s): contrastive training needs at least two "
            "(one per line), as every other sentence of a batch is a negative"
        )
    return sentences


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _stsb_rows(lines: list[str]) -> list[list[str]] | None:
    """The STS benchmark's rows as [sentence1, sentence2, score], if `lines` are in its format."""
    first = lines[0].split("\t")
    if len(first) < 7 or _number(first[4]) is None:
        return None
    rows = []
    for n, line in enumerate(lines, 1):
        fields = line.split("\t")
        if len(fields) < 7 or _number(fields[4]) is None:
            raise LmlabError(
                f"line {n} has {len(fields)} tab-separated fields, not the STS benchmark's "
                "genre, file, year, id, score, sentence1, sentence2"
            )
        rows.append([fields[5], fields[6], fields[4]])
    return rows


def read_pairs(path: str | Path) -> Pairs:
    """The pairs of a .tsv/.csv file or an STS benchmark file (see the module's docstring)."""
    text = _read_text(path)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise LmlabError(f"{path} holds no pairs")
    rows = _stsb_rows(lines)
    if rows is None:
        delimiter = "\t" if Path(path).suffix.lower() == ".tsv" or "\t" in lines[0] else ","
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(r)]
        if rows and {c.strip().lower() for c in rows[0]} <= HEADER_NAMES:
            rows = rows[1:]  # a header row
        if not rows:
            raise LmlabError(f"{path} holds no pairs")
    width = len(rows[0])
    if width not in (2, 3):
        raise LmlabError(
            f"{path}: the first row has {width} column(s); give text1, text2 and optionally "
            "a score or a hard negative"
        )
    for n, row in enumerate(rows, 1):
        if len(row) != width or not all(cell.strip() for cell in row[:width]):
            raise LmlabError(
                f"{path}: row {n} has a missing or empty column ({len(row)} of {width}); every "
                "row needs text1, text2" + (" and a third column" if width == 3 else "")
            )
    text1, text2 = [r[0].strip() for r in rows], [r[1].strip() for r in rows]
    if width == 2:
        return Pairs(text1, text2)
    numbers = [_number(r[2]) for r in rows]
    if all(v is not None for v in numbers):
        return Pairs(text1, text2, scores=numbers)
    return Pairs(text1, text2, negatives=[r[2].strip() for r in rows])


def read_scored_pairs(path: str | Path) -> Pairs:
    """Pairs with a gold score each (an STS file): an error for a file without scores."""
    pairs = read_pairs(path)
    if pairs.scores is None:
        raise LmlabError(
            f"{path} has no score column: STS evaluation needs text1, text2, score rows "
            "(or the STS benchmark's own format)"
        )
    if len(pairs) < 2:
        raise LmlabError(f"{path} holds {len(pairs)} pair: a correlation needs at least two")
    return pairs
