"""The `lmlab` command line: a thin layer over the public Python API.

Every user mistake ends in one line on stderr (`error: ...`) and exit code 2, never a traceback.
Commands live in one module per topic; importing a module registers its commands on `app`.
"""

from __future__ import annotations

import sys
import warnings

import typer

from lmlab._offline import enforce_offline

# Each import registers its module's commands on `app`.
from lmlab.cli import (  # noqa: F401
    classify_commands,
    clip_commands,
    contrastive_commands,
    embed_commands,
    eval_commands,
    export_commands,
    lm_commands,
    lora_commands,
    ngram_commands,
    posttrain_commands,
    seq2seq_commands,
    serve_commands,
    tokenizer_commands,
    train_commands,
    word2vec_commands,
)
from lmlab.cli.app import app
from lmlab.cli.display import install_display
from lmlab.errors import LmlabError


def main(argv: list[str] | None = None) -> None:
    """Entry point: run a command; user mistakes exit 2 with a one-line message."""
    enforce_offline()  # the command owns its process: no hub, no telemetry, quiet libraries
    install_display()  # the library's progress and log messages, drawn on stderr
    try:
        code = _run(argv)
    except BrokenPipeError:  # output piped into `head` and closed early
        code = 0
    sys.exit(code)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning (a degenerate result, a library's note) as one `warning:` line on
    stderr, without the file, line and source that Python's default display adds."""
    text = " ".join(str(message).split())  # one line, whatever the message
    print(f"warning: {text}", file=sys.stderr)


def _run(argv: list[str] | None) -> int:
    try:  # recent typer releases vendor click
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors

    command = typer.main.get_command(app)
    try:
        with warnings.catch_warnings():  # restores Python's own display afterwards
            warnings.showwarning = show_warning
            code = command.main(args=argv, prog_name="lmlab", standalone_mode=False)
    except getattr(click_errors, "NoArgsIsHelpError", ()) as e:  # `lmlab` alone: show the help
        print(e.format_message())
        return 0
    except click_errors.UsageError as e:
        where = e.ctx.command_path if e.ctx else "lmlab"
        print(f"error: {e.format_message()} (see: {where} --help)", file=sys.stderr)
        return 2
    except LmlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as e:  # a path that cannot be written or read: the user's to fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print(file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0
