"""The code blocks of README.md and docs/, read as a reader meets them, and how to run them.

Why our own collector on markdown-it-py (the parser pytest-markdown-docs is built on) rather than
pytest-markdown-docs or mktestdocs, both of which install and run offline here: a page mixes
shell and Python blocks that share files (`cat > corpus.txt` and then `lmlab train ngram
corpus.txt`, then Python reading the run), so its blocks must run in order, in one folder, with
one Python namespace. pytest-markdown-docs runs Python blocks only, each alone or, with
`continuation`, by executing every earlier block again (a page loading a model in its first block
would load it once per block); mktestdocs runs one language per pass and recognises a block only
when its info string is exactly the language, so a marked block is skipped silently. Neither
checks the `lmlab` lines of blocks that are not run against the command line's options.

Markers: an HTML comment just before a block (invisible on GitHub and on the site):
`<!-- test: skip (REASON) -->`, `<!-- test: slow -->`, `<!-- test: server -->`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGS = ("python", "bash")
MARKER = re.compile(r"<!--\s*test:\s*(skip|slow|server)\s*(?:\((?P<reason>[^)]+)\))?\s*-->")
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "<<", "2>", "2>&1"}


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    mode: str  # run | skip | slow | server

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path) -> list[Block]:
    """The python and bash blocks of a page, with the marker of the comment before each."""
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    blocks = []
    for i, token in enumerate(tokens):
        if token.type != "fence" or not token.info.strip():
            continue
        lang = token.info.split()[0]
        if lang not in RUN_LANGS:
            continue
        mode = "run"
        before = tokens[i - 1] if i else None
        if before is not None and before.type == "html_block" and "test:" in before.content:
            m = MARKER.fullmatch(before.content.strip())
            where = f"{page.relative_to(ROOT)}:{before.map[0] + 1}"
            if m is None:
                raise ValueError(f"{where}: unknown example marker {before.content.strip()!r}")
            mode = m.group(1)
            if mode == "skip" and not m.group("reason"):
                raise ValueError(f"{where}: a skipped example says why: <!-- test: skip (why) -->")
            if mode == "server" and lang != "python":
                raise ValueError(f"{where}: only Python blocks run against the server")
        blocks.append(Block(page, token.map[0] + 2, lang, token.content, mode))
    return blocks


def shell_commands(code: str) -> list[str]:
    """A bash block's commands: continued lines joined, a here-document kept with its command."""
    commands: list[str] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        heredoc = re.search(r"<<-?\s*'?\"?(\w+)", line)
        if heredoc:
            body = []
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1  # the terminator
            line = "\n".join([line, *body, heredoc.group(1)])
        commands.append(line)
    return commands


def lmlab_argv(command: str) -> tuple[list[str], bool] | None:
    """The arguments after `lmlab` in a shell command (`lmlab ...`, `... -m lmlab ...`), and
    whether the command is lmlab alone (no pipe or redirection), so it can run in process."""
    first_line = command.splitlines()[0]
    try:
        lexer = shlex.shlex(first_line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
    except ValueError:
        return None
    start = None
    if tokens and tokens[0] == "lmlab":
        start = 1
    else:
        for k in range(len(tokens) - 1):
            if tokens[k] == "-m" and tokens[k + 1] == "lmlab":
                start = k + 2
                break
    if start is None:
        return None
    rest = tokens[start:]
    ops = [k for k, t in enumerate(rest) if t in SHELL_OPERATORS]
    argv = rest[: ops[0]] if ops else rest
    return argv, start == 1 and not ops


def parse_cli(argv: list[str]) -> None:
    """Parse `lmlab ARGV` against the command line without running it: an unknown command or
    option, a missing argument or a value of the wrong type raises click's UsageError."""
    import typer

    from lmlab.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("lmlab", list(argv))
    while hasattr(command, "resolve_command"):  # a group: find its subcommand and go on
        args = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not args:
            return
        name, command, rest = command.resolve_command(ctx, args)
        ctx = command.make_context(name, rest, parent=ctx)
