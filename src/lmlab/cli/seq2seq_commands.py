"""`lmlab train seq2seq TABLE --source-col en --target-col es --out RUN`: an encoder-decoder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import (
    AccumulateOpt,
    DeviceOpt,
    EvalEveryOpt,
    JsonOpt,
    LrOpt,
    PatienceOpt,
    ProgressOpt,
    ResumeOpt,
    StepsOpt,
    TrainSeedOpt,
    WarmupOpt,
    app,
    emit_json,
    train_app,
)
from lmlab.cli.train_commands import TRAIN_OPTIONS, _summary

MODEL_OPTIONS = {  # option -> TransformerConfig or Seq2SeqRNNConfig field
    "encoder_layers": "n_encoder_layer",
    "decoder_layers": "n_decoder_layer",
    "heads": "n_head",
    "dim": "n_embd",
    "context": "context",
    "dropout": "dropout",
    "layers": "n_layer",
    "hidden": "n_hidden",
    "cell": "cell",
    "attention": "attention",
    "bidirectional": "bidirectional",
}


@train_app.command("seq2seq")
def train_seq2seq_command(
    table: Annotated[Path, typer.Argument(help="A .tsv, .csv, .jsonl or .parquet of pairs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    valid: Annotated[Path | None, typer.Option(help="Held-out pairs, same columns.")] = None,
    source_col: Annotated[
        str | None, typer.Option("--source-col", help="The source column (e.g. en).")
    ] = None,
    target_col: Annotated[
        str | None, typer.Option("--target-col", help="The target column (e.g. es).")
    ] = None,
    arch: Annotated[str, typer.Option(help="transformer or rnn.")] = "transformer",
    attention: Annotated[
        str | None,
        typer.Option(help="--arch rnn: none, bahdanau (the default), luong or luong-dot."),
    ] = None,
    cell: Annotated[str | None, typer.Option(help="--arch rnn: gru (the default) or lstm.")] = None,
    bidirectional: Annotated[
        bool | None,
        typer.Option("--bidirectional/--unidirectional", help="--arch rnn: the encoder's reading."),
    ] = None,
    layers: Annotated[
        int | None, typer.Option(help="--arch rnn: recurrent layers on each side.")
    ] = None,
    hidden: Annotated[
        int | None, typer.Option(help="--arch rnn: the decoder's state size (default 512).")
    ] = None,
    tokenizer: Annotated[
        str,
        typer.Option(help="A tokenizer folder, or train one on both sides: byte-bpe or bpe."),
    ] = "byte-bpe",
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", help="For a tokenizer trained here.")
    ] = 8000,
    preset: Annotated[
        str | None, typer.Option(help="tiny, or base-cpu (3+3 layers, d 256: the default).")
    ] = None,
    encoder_layers: Annotated[
        int | None, typer.Option("--encoder-layers", help="Encoder layers.")
    ] = None,
    decoder_layers: Annotated[
        int | None, typer.Option("--decoder-layers", help="Decoder layers.")
    ] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads.")] = None,
    dim: Annotated[
        int | None, typer.Option(help="Model width (the FFN is 4x); rnn: embedding size.")
    ] = None,
    context: Annotated[
        int | None, typer.Option(help="The most tokens of a source or a target.")
    ] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout probability.")] = None,
    label_smoothing: Annotated[
        float, typer.Option("--label-smoothing", help="Training's label smoothing (0: none).")
    ] = 0.0,
    minutes: Annotated[
        float | None, typer.Option(help="A time budget: stop when it is spent (or at --steps).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Pairs per step.")] = None,
    accumulate: AccumulateOpt = None,
    steps: StepsOpt = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the pairs.")] = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    dtype: Annotated[str | None, typer.Option(help="auto, float32 or bfloat16.")] = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Train an encoder-decoder (source -> target) on a table of pairs; write the run to --out:
    a Transformer, or an RNN with or without attention."""
    from lmlab.training import TrainConfig, TrainingInterrupted
    from lmlab.training.seq2seq import train_seq2seq

    given = {k: v for k, v in locals().items() if v is not None}
    model_options = {field: given[k] for k, field in MODEL_OPTIONS.items() if k in given}
    config = TrainConfig(**{k: given[k] for k in TRAIN_OPTIONS if k in given})
    try:
        result = train_seq2seq(table, out, valid=valid, source_col=source_col,
                               target_col=target_col, arch=arch, tokenizer=tokenizer,
                               vocab_size=vocab_size, preset=preset, model_options=model_options,
                               label_smoothing=label_smoothing, minutes=minutes, config=config,
                               resume=resume,
                               progress=progress and not as_json)  # fmt: skip
    except TrainingInterrupted as e:  # Ctrl-C: the checkpoint is saved; say how to go on
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    if as_json:
        emit_json(result.to_dict())
        return
    print(_summary("seq2seq", result).replace("tokens/s", "target tokens/s"))
    print(f"saved in {result.out}")


@app.command("translate")
def translate_command(
    run: Annotated[Path, typer.Argument(help="A run of `lmlab train seq2seq`.")],
    texts: Annotated[list[str], typer.Argument(help="Source texts, one translation each.")],
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", help="The most target tokens (default: 2 x source + 10)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Translate TEXTS with a sequence-to-sequence run (greedy decoding)."""
    from lmlab.errors import LmlabError
    from lmlab.seq2seq.model import load_seq2seq

    if max_tokens is not None and max_tokens < 1:
        raise LmlabError("--max-tokens must be at least 1", param="max_tokens")
    translations = load_seq2seq(run).translate(texts, max_tokens=max_tokens)
    if as_json:
        emit_json(
            [{"source": s, "translation": t} for s, t in zip(texts, translations, strict=True)]
        )
        return
    for translation in translations:
        print(translation)
