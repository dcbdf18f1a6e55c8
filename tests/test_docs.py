"""Every example of README.md and docs/ runs as written: a renamed option breaks a test, not a
reader. How blocks are read and marked: tests/docs_examples.py (and docs/development.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from docs_examples import PAGES, ROOT, Block, lmlab_argv, parse_cli, read_blocks, shell_commands

BLOCKS = {page: read_blocks(page) for page in PAGES}
LMLAB_LINES = [
    (block, found[0])
    for blocks in BLOCKS.values()
    for block in blocks
    if block.lang == "bash"
    for command in shell_commands(block.code)
    if (found := lmlab_argv(command)) is not None
]


@pytest.mark.parametrize(
    ("block", "argv"), LMLAB_LINES, ids=[f"{b.where}:{' '.join(a[:2])}" for b, a in LMLAB_LINES]
)
def test_lmlab_lines_parse(block: Block, argv: list[str]) -> None:
    """Every `lmlab` line, run or not, names a command and options that exist."""
    parse_cli(argv)


def test_pages_have_runnable_examples() -> None:
    """The collector finds the blocks (a parser change that found none would pass silently)."""
    assert len(LMLAB_LINES) > 50
    runs = [b for blocks in BLOCKS.values() for b in blocks if b.mode == "run"]
    assert {b.lang for b in runs} == {"python", "bash"}
    assert any(b.mode == "skip" for b in BLOCKS[ROOT / "README.md"])


def test_readme_links_exist() -> None:
    """The README's relative links point at files of the checkout (the site's links are
    checked by `mkdocs build --strict`)."""
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert targets and not missing


def _env() -> dict[str, str]:
    """The environment of shell lines: this checkout's lmlab first, the venv's python and
    lmlab on PATH, as for a reader with the venv activated."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def _run_shell(block: Block, capsys) -> None:
    from lmlab.cli import _run

    for command in shell_commands(block.code):
        found = lmlab_argv(command)
        if found is not None and found[1]:  # `lmlab ...` alone: in process (no start-up cost)
            argv = found[0]
            assert argv[:1] != ["serve"], f"{block.where}: mark a block starting a server skip"
            code = _run(argv)
            err = capsys.readouterr().err
            assert code == 0, f"{block.where}: `{command}` exited {code}: {err}"
        else:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, f"{block.where}: `{command}` failed: {done.stderr}"


def _run_python(block: Block, namespace: dict) -> None:
    # Leading newlines make a traceback's line numbers those of the Markdown file.
    code = compile("\n" * (block.line - 1) + block.code, str(block.page), "exec")
    exec(code, namespace)


def _run_blocks(blocks: list[Block], capsys) -> None:
    import torch

    threads = torch.get_num_threads()  # examples run in this process: leave it as found
    namespace: dict = {"__name__": "__main__"}
    try:
        for block in blocks:
            if block.lang == "bash":
                _run_shell(block, capsys)
            else:
                _run_python(block, namespace)
    finally:
        torch.set_num_threads(threads)


RUNNABLE = [p for p in PAGES if any(b.mode == "run" for b in BLOCKS[p])]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_page_examples(page, tmp_path, monkeypatch, capsys) -> None:
    """A page's blocks run in order in one fresh folder, sharing files and Python names."""
    monkeypatch.chdir(tmp_path)
    _run_blocks([b for b in BLOCKS[page] if b.mode == "run"], capsys)


SLOW = [b for blocks in BLOCKS.values() for b in blocks if b.mode == "slow"]


@pytest.mark.slow
@pytest.mark.parametrize("block", SLOW, ids=[b.where for b in SLOW])
def test_slow_examples(block, tmp_path, monkeypatch, capsys) -> None:
    """A slow block runs alone in its own folder: it makes its own inputs."""
    monkeypatch.chdir(tmp_path)
    _run_blocks([block], capsys)


SERVED = [b for blocks in BLOCKS.values() for b in blocks if b.mode == "server"]


@pytest.mark.slow
@pytest.mark.parametrize("block", SERVED, ids=[b.where for b in SERVED])
def test_server_examples(block, server, tmp_path, monkeypatch) -> None:
    """Client examples run against a live `lmlab serve` (the address they show is rewritten)."""
    monkeypatch.chdir(tmp_path)
    served = block.code.replace("http://127.0.0.1:8000", server.url)
    _run_python(Block(block.page, block.line, block.lang, served, block.mode), {})
