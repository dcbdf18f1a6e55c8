"""The tables the CLI prints: rich on a terminal, plain lines in a pipe; never a cut cell.

On a terminal, a cell too wide for its column wraps (a long word is folded) instead of being cut
with an ellipsis. Piped or redirected, a table is plain text: its title as a `# ` line, then the
header and one line per row, cells separated by tabs and given in full, so `grep`, `cut -f1`,
`sort` and spreadsheets read it (rich's boxes and styles are for people).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def new_table(*headers: str, title: str | None = None) -> Table:
    """A rich Table whose columns wrap rather than ellipsize what does not fit."""
    from rich.table import Table

    table = Table(*headers, title=title)
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


def print_table(table: Table, console: Console | None = None, key: int | None = None) -> None:
    """Print `table` on `console` (stdout by default): drawn on a terminal, plain otherwise.

    `key`: a column (the names users copy) kept whole on a terminal wide enough to leave the
    other columns 4 characters each; on a narrower one it wraps too (rich would otherwise
    squeeze the other columns to nothing).
    """
    from rich.console import Console

    console = console or Console()
    if console.is_terminal:
        if key is not None:
            column = table.columns[key]
            widest = max(len(_plain(cell)) for cell in [column.header, *column.cells])
            others = len(table.columns) - 1
            column.no_wrap = console.width >= widest + 3 + 7 * others + 1  # 3: border, padding
        console.print(table)
        return
    lines = [f"# {_plain(table.title)}"] if table.title else []
    lines.append("\t".join(_plain(column.header) for column in table.columns))
    cells = [list(column.cells) for column in table.columns]
    lines += ["\t".join(_plain(cell) for cell in row) for row in zip(*cells, strict=True)]
    console.file.write("\n".join(lines) + "\n")
    console.file.flush()


def _plain(cell: object) -> str:
    """A cell's text without rich markup, on one line."""
    from rich.errors import MarkupError
    from rich.text import Text

    if isinstance(cell, str):
        try:
            text = Text.from_markup(cell).plain
        except MarkupError:  # brackets that are not markup: the text as it is
            text = cell
    elif isinstance(cell, Text):
        text = cell.plain
    else:
        text = str(cell)
    return " ".join(text.replace("\t", " ").splitlines())
