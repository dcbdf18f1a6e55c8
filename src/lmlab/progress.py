"""Progress of long library calls, reported without drawing anything.

Library code never writes to the user's terminal: a long call opens a `task` and advances it,
and what the user sees is the application's choice. By default nothing is shown; the `lmlab`
command installs rich bars; a notebook can show tqdm bars, or anything else taking
(total, unit, description):

    >>> lmlab.progress.set_display(lmlab.progress.tqdm_display)
    >>> lmlab.embed_file("speeches.csv", "speeches.parquet")      # now with a bar

A call's own `progress=` argument turns its reporting off (False) or sends it to a display of
its own (a callable as above) instead of the installed one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

Advance = Callable[[float], object]  # advance(n): n more units done
# (total or None, unit, description) -> a context yielding advance
Display = Callable[[float | None, str, str], AbstractContextManager[Advance]]

_display: Display | None = None


def set_display(display: Display | None) -> Display | None:
    """Show progress with `display` from now on (None: not at all); returns the previous one."""
    global _display
    previous, _display = _display, display
    return previous


@contextlib.contextmanager
def task(
    total: float | None, *, unit: str = "it", desc: str = "", progress: bool | Display = True
) -> Iterator[Advance]:
    """A unit of work of `total` units (None: unknown); yields `advance(n)`.

    `progress`: False reports nothing; True reports to the installed display; a display
    receives this task alone.
    """
    display = progress if callable(progress) else _display if progress else None
    if display is None:
        yield _ignore
        return
    with display(total, unit, desc) as advance:
        yield advance


def _ignore(n: float = 1) -> None:
    """What a task no one watches does with its progress."""


@contextlib.contextmanager
def tqdm_display(total: float | None, unit: str, desc: str) -> Iterator[Advance]:
    """A tqdm bar (tqdm.auto: a widget in notebooks), removed when the task ends."""
    from tqdm.auto import tqdm

    scale = unit == "B"  # bytes read: kB, MB
    with tqdm(total=total, unit=unit, desc=desc or None, leave=False, unit_scale=scale) as bar:
        yield bar.update
