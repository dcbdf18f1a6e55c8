"""Reading the user's text files: UTF-8 only, strictly, with or without a byte-order mark.

Every command that reads texts from a file (txt, CSV, TSV, JSONL) opens it here, so they all
agree: a UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped, and bytes that are not UTF-8
(a Latin-1 or cp1252 export) stop the command with one line naming the file, the line and the
byte, instead of being replaced by U+FFFD and embedded corrupted without a word.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from lmlab.errors import LmlabError


@contextmanager
def open_text(path: str | Path, *, newline: str | None = None) -> Iterator[TextIO]:
    """The file opened for reading as UTF-8 (a leading BOM skipped); a byte that is not UTF-8,
    wherever it is read inside the block, becomes an LmlabError saying where it is.

    Args:
        path: the file.
        newline: as `open`'s ("" for the csv module).

    Example:
        >>> with open_text("speeches.csv", newline="") as f:
        ...     rows = list(csv.reader(f))
    """
    path = Path(path)
    with open(path, encoding="utf-8-sig", newline=newline) as f:
        try:
            yield f
        except UnicodeDecodeError:
            raise LmlabError(not_utf8(path), param="file") from None


def not_utf8(path: Path) -> str:
    """The message for a file that is not UTF-8: its first bad byte, and the line it is on.

    The file is read again as bytes line by line (a UTF-8 character never contains a newline
    byte, so each line decodes on its own); the decoder's own error only knows its buffer."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = f"line {number}, byte 0x{raw[e.start]:02x}"
                return f"{path.name} is not UTF-8 ({where}): save it as UTF-8"
    return f"{path.name} is not UTF-8: save it as UTF-8"
