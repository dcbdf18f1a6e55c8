"""Translating a text file line by line into another (`lmlab translate RUN --file in --out out`).

The input is checked whole first (UTF-8, and its line count for the progress bar), so a bad
file stops before any work; lines are then translated in chunks as they are read, so a large
file never sits in memory, and written through a temporary file renamed at the end: the output
is complete or absent. An empty line gives an empty line, so line i of the output is the
translation of line i of the input.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lmlab.errors import LmlabError


@dataclass
class FileTranslation:
    """What `translate_file` did: lines read and translated, and sources cut to fit."""

    lines: int
    translated: int
    truncated: int
    out: str | None


def count_lines(path: Path) -> int:
    """The lines of a UTF-8 text file; a one-line error for a missing or non-UTF-8 one."""
    if not path.is_file():
        raise LmlabError(f"{path} does not exist", param="file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines, offset, last = 0, 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                line = lines + chunk[: e.start].count(b"\n") + 1
                raise LmlabError(
                    f"{path} is not UTF-8 text (byte {offset + e.start + 1}, line {line})",
                    param="file",
                ) from None
            offset += len(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise LmlabError(f"{path} is not UTF-8 text (it ends inside a character)") from None
    return lines + (last != b"\n")


def chunks(path: Path, size: int) -> Iterator[list[str]]:
    """The file's lines (without their line ends), `size` at a time."""
    with path.open(encoding="utf-8", newline=None) as f:
        part: list[str] = []
        for line in f:
            part.append(line.rstrip("\n"))
            if len(part) == size:
                yield part
                part = []
        if part:
            yield part


def translate_file(
    s2s,
    path: str | Path,
    out: str | Path | None = None,
    *,
    write=None,
    chunk: int = 256,
    progress: bool = True,
    **options,
) -> FileTranslation:
    """Translate each line of the UTF-8 text file `path` into the file `out` (atomically), or
    hand each chunk of translations to `write` (a callable taking a list of lines); `options`
    go to `Seq2Seq.translate` (sources too long for the model are cut, and counted)."""
    from lmlab.home import atomic_file
    from lmlab.progress import task

    path = Path(path)
    total = count_lines(path)
    if chunk < 1:
        raise LmlabError("the chunk size must be at least 1")
    translated = truncated = 0

    def run(emit) -> None:
        nonlocal translated, truncated
        with task(total, unit="lines", desc="translating", progress=progress) as advance:
            for part in chunks(path, chunk):
                filled = [i for i, text in enumerate(part) if text.strip()]
                texts = [part[i] for i in filled]
                truncated += s2s.source_token_ids(texts, truncate=True)[1]
                found = s2s.translate(texts, truncate=True, **options) if texts else []
                lines = [""] * len(part)
                for i, text in zip(filled, found, strict=True):
                    lines[i] = text.replace("\n", " ")
                emit(lines)
                translated += len(texts)
                advance(len(part))

    if out is None:
        run(write or (lambda lines: None))
    else:
        with atomic_file(Path(out)) as tmp, tmp.open("w", encoding="utf-8") as f:
            run(lambda lines: f.write("".join(line + "\n" for line in lines)))
    return FileTranslation(total, translated, truncated, str(out) if out is not None else None)
