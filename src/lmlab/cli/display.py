"""How the command line shows what the library reports: progress as rich bars, lmlab's log
messages (warnings, notes such as a one-time conversion) as lines on stderr."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from lmlab import progress


def install_display() -> None:
    """Route the library's progress and log records to the terminal (stderr)."""
    progress.set_display(rich_display)
    logger = logging.getLogger("lmlab")
    if not any(isinstance(h, _RichHandler) for h in logger.handlers):
        logger.addHandler(_RichHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the command's own lines, not the root logger's format


@contextlib.contextmanager
def rich_display(total: float | None, unit: str, desc: str) -> Iterator[progress.Advance]:
    """A transient rich bar on stderr: bytes with rate and time left, else counts; nothing
    when stderr is not a terminal (a log file gets no bar frames)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda n=1: None
        return
    if unit == "B":
        counts = (DownloadColumn(), TransferSpeedColumn())
    else:
        counts = (MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn())
    columns = (TextColumn(desc), BarColumn(), *counts, TimeRemainingColumn())
    with Progress(*columns, transient=True, console=console) as bar:
        task = bar.add_task(desc, total=total)
        yield lambda n=1: bar.advance(task, n)


class _RichHandler(logging.Handler):
    """warning: in yellow, notes dim, on stderr (one line each, wrapped by the terminal)."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.console import Console
        from rich.text import Text

        message = self.format(record)
        if record.levelno >= logging.WARNING:
            text = Text.assemble(("warning:", "yellow"), " ", message)
        else:
            text = Text(message, style="dim")
        Console(stderr=True).print(text, highlight=False, soft_wrap=True)
