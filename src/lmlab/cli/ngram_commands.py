"""N-gram commands: `lmlab train ngram`, `lmlab ngram table`, `lmlab ngram compare`.

Kept free of torch: training a 5-gram on Penn Treebank takes a few seconds, start-up included.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import JsonOpt, ProgressOpt, app, emit_json, train_app
from lmlab.errors import LmlabError

ngram_app = typer.Typer(
    help="Count-based language models: tables and perplexity by order.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(ngram_app, name="ngram")


class Smoothing(StrEnum):
    mle = "mle"
    add_k = "add-k"
    kn = "kn"
    mkn = "mkn"


SmoothingOpt = Annotated[
    Smoothing,
    typer.Option(help="mle, add-k (Laplace at k=1), kn (Kneser–Ney) or mkn (modified KN)."),
]
KOpt = Annotated[float, typer.Option("--k", help="Pseudo-count of add-k.")]
MinCountOpt = Annotated[
    int, typer.Option("--min-count", help="Words seen fewer times become <unk>.")
]
MaxVocabOpt = Annotated[
    int | None, typer.Option("--max-vocab", help="Keep only the most frequent words.")
]
LowercaseOpt = Annotated[bool, typer.Option("--lowercase", help="Lowercase the text first.")]
TokenizerOpt = Annotated[
    str | None,
    typer.Option(help="Split lines with this model's tokenizer (default: whitespace words)."),
]


@train_app.command("ngram")
def train_ngram(
    corpus: Annotated[
        list[Path], typer.Argument(help="Text files, one sentence per line, words by spaces.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model directory to write.")],
    order: Annotated[int, typer.Option(help="N: the model conditions on N-1 words.")] = 3,
    smoothing: SmoothingOpt = Smoothing.mkn,
    k: KOpt = 1.0,
    min_count: MinCountOpt = 1,
    max_vocab: MaxVocabOpt = None,
    lowercase: LowercaseOpt = False,
    tokenizer: TokenizerOpt = None,
    gzip: Annotated[bool, typer.Option("--gzip", help="Write model.arpa.gz.")] = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Count n-grams in CORPUS, smooth them and write an ARPA model directory (--out)."""
    import time

    from lmlab.lm.ngram.model import NgramLM

    start = time.perf_counter()
    lm = NgramLM.train(
        corpus,
        order=order,
        smoothing=smoothing.value,
        k=k,
        min_count=min_count,
        max_vocab=max_vocab,
        lowercase=lowercase,
        tokenizer=tokenizer,
        progress=progress and not as_json,
    )
    if not as_json:
        i = lm.info
        print(
            f"read {i['words']:,} words in {i['sentences']:,} sentences; "
            f"vocabulary {i['vocab_size']:,}; n-grams {i['ngrams']}"
        )
    lm.save(out, gzip=gzip)
    info = {"out": str(out), **lm.info, "total_seconds": round(time.perf_counter() - start, 3)}
    if as_json:
        emit_json(info)
        return
    print(
        f"{order}-gram {smoothing.value} model written to {out} "
        f'in {info["total_seconds"]:.1f} s. Try: lmlab generate --model {out} "" --seed 1'
    )


@ngram_app.command("table")
def table(
    model: Annotated[str, typer.Argument(help="An n-gram model directory or ARPA file.")],
    words: Annotated[list[str], typer.Argument(help="The words of the rows and columns.")],
    words_flag: Annotated[
        bool, typer.Option("--words", help="Optional marker before the words.")
    ] = False,
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the tables here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bigram count and probability tables for WORDS (rows: previous word)."""
    from lmlab.lm.ngram.report import bigram_table

    result = bigram_table(model, words)
    if csv is not None:
        _write_csv(result, csv)
    if as_json:
        emit_json(result.to_dict())
        return
    from rich.console import Console

    from lmlab.cli.tables import new_table, print_table

    width = 12 + max(map(len, result.words)) + 10 * len(result.words)
    console = Console(width=max(Console().width, width))  # never squeeze the numbers
    if result.counts is not None:
        counts = new_table("", *result.words, title="bigram counts c(row word, column word)")
        for w, row in zip(result.words, result.counts, strict=True):
            counts.add_row(w, *map(str, row))
        print_table(counts, console)
    else:
        console.print("(no counts: the model was read from an ARPA file)")
    probs = new_table("", *result.words, title="bigram probabilities p(column word | row word)")
    for w, row in zip(result.words, result.probs, strict=True):
        probs.add_row(w, *(f"{p:.2g}" for p in row))
    print_table(probs, console)


def _write_csv(result, path: Path) -> None:
    import csv
    import io

    from lmlab.home import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["table", "previous", *result.words])
    for name, rows in (("count", result.counts), ("probability", result.probs)):
        for w, row in zip(result.words, rows or [], strict=False):
            # probabilities come from float32 tables: 7 significant digits, not 0.79999999679
            writer.writerow([name, w, *(f"{v:.7g}" if name == "probability" else v for v in row)])
    atomic_write_text(path, buffer.getvalue())


@ngram_app.command("compare")
def compare(
    train: Annotated[Path, typer.Argument(help="Training text, one sentence per line.")],
    test: Annotated[Path, typer.Argument(help="Test text, one sentence per line.")],
    orders: Annotated[list[int] | None, typer.Argument(help="Orders to train.")] = None,
    orders_flag: Annotated[
        bool, typer.Option("--orders", help="Optional marker before the orders (default 1 2 3).")
    ] = False,
    smoothing: SmoothingOpt = Smoothing.mkn,
    k: KOpt = 1.0,
    min_count: MinCountOpt = 1,
    max_vocab: MaxVocabOpt = None,
    lowercase: LowercaseOpt = False,
    tokenizer: TokenizerOpt = None,
    png: Annotated[Path | None, typer.Option("--png", help="Write a bar chart here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train one model per order on TRAIN and print each one's perplexity on TEST."""
    from dataclasses import asdict

    from lmlab.lm.ngram.report import compare_orders, plot_perplexities

    if orders is not None and any(n < 1 for n in orders):
        raise LmlabError("--orders must be positive integers", param="orders")
    results = compare_orders(
        train,
        test,
        orders=orders or [1, 2, 3],
        smoothing=smoothing.value,
        k=k,
        min_count=min_count,
        max_vocab=max_vocab,
        lowercase=lowercase,
        tokenizer=tokenizer,
    )
    if png is not None:
        plot_perplexities(results, png, title=f"{test.name}: perplexity by order ({smoothing})")
    if as_json:
        emit_json([asdict(r) for r in results])
        return
    from lmlab.cli.tables import new_table, print_table

    t = new_table(
        "order",
        "perplexity",
        "tokens scored",
        "OOV",
        "n-grams",
        "seconds",
        title=f"{smoothing.value} models of {train.name}, scored on {test.name}",
    )
    for r in results:
        t.add_row(
            f"{r.order}-gram",
            f"{r.perplexity:.1f}",
            f"{r.tokens:,}",
            f"{r.oov:,}",
            f"{r.ngrams:,}",
            f"{r.seconds:.2f}",
        )
    print_table(t)
    if png is not None:
        print(f"chart written to {png}")
