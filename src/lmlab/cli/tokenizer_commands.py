"""`lmlab tokenizer train`: a BPE, WordPiece, character or word tokenizer for your corpus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import JsonOpt, app, emit_json
from lmlab.errors import LmlabError

tokenizer_app = typer.Typer(
    help="Train tokenizers (saved as tokenizer.json).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
def train(
    corpus: Annotated[list[Path], typer.Argument(help="UTF-8 text files to learn from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write tokenizer.json to.")],
    kind: Annotated[str, typer.Option(help="bpe, byte-bpe, wordpiece, char or word.")] = "bpe",
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", help="Most tokens, special tokens included.")
    ] = 8000,
    show_merges: Annotated[
        int, typer.Option("--show-merges", help="Print the first K merges (BPE kinds).", min=0)
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Learn a tokenizer from CORPUS files and save it in --out."""
    import warnings

    from lmlab.text.tokenizer_training import VocabularySizeWarning, merges_of, train_tokenizer

    if vocab_size < 1:
        raise LmlabError("--vocab-size must be positive", param="vocab_size")
    if show_merges and kind not in ("bpe", "byte-bpe"):
        raise LmlabError(f"a {kind} tokenizer has no merges: --show-merges needs bpe or byte-bpe")
    with warnings.catch_warnings():  # said below, in the summary line or the JSON
        warnings.simplefilter("ignore", VocabularySizeWarning)
        tok = train_tokenizer(corpus, out, kind=kind, vocab_size=vocab_size)
    merges = merges_of(out)[:show_merges] if show_merges else []
    if as_json:
        emit_json(
            {
                "out": str(out),
                "kind": kind,
                "vocab_size": tok.vocab_size,
                "requested_vocab_size": vocab_size,
                "size_note": tok.size_note,
                "merges": [" ".join(m) for m in merges],
            }
        )
        return
    for i, (a, b) in enumerate(merges, 1):
        print(f"{i:>4}  {a} {b}")
    print(f"{kind} tokenizer, {tok.vocab_size} tokens, saved in {out / 'tokenizer.json'}")
    if tok.size_note:
        print(f"warning: {tok.size_note}", file=sys.stderr)
