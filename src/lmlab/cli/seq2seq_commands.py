"""`lmlab train seq2seq TABLE --source-col en --target-col es --out RUN`: an encoder-decoder."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import (
    AccumulateOpt,
    DeviceOpt,
    EvalEveryOpt,
    JsonOpt,
    LrOpt,
    MinPOpt,
    PatienceOpt,
    ProgressOpt,
    RepPenaltyOpt,
    ResumeOpt,
    SeedOpt,
    StepsOpt,
    TopKOpt,
    TopPOpt,
    TrainSeedOpt,
    WarmupOpt,
    app,
    emit_json,
    train_app,
)
from lmlab.cli.train_commands import TRAIN_OPTIONS, _summary
from lmlab.errors import LmlabError
from lmlab.seq2seq.search_options import DEFAULT_ALPHA, Limits, check_beam

TemperatureS2SOpt = Annotated[
    float | None, typer.Option(help="Sample at this temperature (default: greedy).")
]

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


BeamOpt = Annotated[
    int, typer.Option(help="Beam search with this many hypotheses (1: greedy or sampling).")
]
AlphaOpt = Annotated[
    float, typer.Option(help="Beam search's length penalty ((5 + length) / 6) ** alpha.")
]
MaxTokensS2SOpt = Annotated[
    int | None, typer.Option("--max-tokens", help="The most target tokens (an absolute cap).")
]
MaxLenAOpt = Annotated[
    float, typer.Option("--max-len-a", help="A target has at most a x source tokens + b.")
]
MaxLenBOpt = Annotated[int, typer.Option("--max-len-b", help="See --max-len-a.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Sources decoded together.")]


@app.command("translate")
def translate_command(
    run: Annotated[Path, typer.Argument(help="A run of `lmlab train seq2seq`.")],
    texts: Annotated[
        list[str] | None, typer.Argument(help="Source texts, one translation each.")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="A UTF-8 text file: one source a line.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write --file's translations here.")
    ] = None,
    beam: BeamOpt = 1,
    alpha: AlphaOpt = DEFAULT_ALPHA,
    max_tokens: MaxTokensS2SOpt = None,
    max_len_a: MaxLenAOpt = 2.0,
    max_len_b: MaxLenBOpt = 10,
    temperature: TemperatureS2SOpt = None,
    top_k: TopKOpt = None,
    top_p: TopPOpt = None,
    min_p: MinPOpt = None,
    repetition_penalty: RepPenaltyOpt = None,
    seed: SeedOpt = None,
    batch_size: BatchOpt = 32,
    as_json: JsonOpt = False,
) -> None:
    """Translate TEXTS, or each line of --file, with a sequence-to-sequence run: greedy
    decoding, beam search (--beam K) or sampling (--temperature)."""
    from lmlab.seq2seq.decoding import sampling_params
    from lmlab.seq2seq.files import count_lines
    from lmlab.seq2seq.model import load_seq2seq

    if (file is None) == (not texts):
        given = "both were given" if file is not None else "neither was given"
        raise LmlabError(f"give TEXTS or --file ({given})", param="texts")
    if out is not None and file is None:
        raise LmlabError("--out writes the translations of --file; give --file", param="out")
    empty = [i + 1 for i, text in enumerate(texts or []) if not text.strip()]
    if empty:
        raise LmlabError(f"source text {empty[0]} is empty", param="texts")
    check_beam(beam)
    sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                    repetition_penalty=repetition_penalty)  # fmt: skip
    sampling_params(beam, sampling)  # bad options: an error before loading the model
    Limits(max_len_a, max_len_b, max_tokens)
    if batch_size < 1:
        raise LmlabError("--batch-size must be at least 1", param="batch_size")
    if file is not None:
        count_lines(file)  # a missing or non-UTF-8 file: an error before loading the model
    s2s = load_seq2seq(run)
    options = dict(beam=beam, alpha=alpha, max_tokens=max_tokens, length=(max_len_a, max_len_b),
                   batch_size=batch_size, seed=seed, **sampling)  # fmt: skip
    if file is not None:
        _translate_file(s2s, file, out, as_json, options)
        return
    translations = s2s.translate(texts, **options)
    if as_json:
        emit_json(
            [{"source": s, "translation": t} for s, t in zip(texts, translations, strict=True)]
        )
        return
    for translation in translations:
        print(translation)


def _translate_file(s2s, file: Path, out: Path | None, as_json: bool, options: dict) -> None:
    from lmlab.seq2seq.files import translate_file

    def show(lines: list[str]) -> None:
        for line in lines:
            print(json.dumps({"translation": line}, ensure_ascii=False) if as_json else line)

    result = translate_file(s2s, file, out, write=show if out is None else None, **options)
    if result.truncated:
        print(f"warning: {result.truncated} sources were longer than the model reads and were "
              "cut", file=sys.stderr)  # fmt: skip
    if out is not None:
        if as_json:
            emit_json(asdict(result))
        else:
            print(f"translated {result.translated:,} of {result.lines:,} lines into {out}")


@app.command("attention")
def attention_command(
    run: Annotated[Path, typer.Argument(help="A run of `lmlab train seq2seq`.")],
    text: Annotated[str, typer.Argument(help="The source text to translate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")],
    beam: BeamOpt = 1,
    alpha: AlphaOpt = DEFAULT_ALPHA,
    as_json: JsonOpt = False,
) -> None:
    """Draw the cross-attention of RUN's translation of TEXT: source words x target words."""
    from lmlab.seq2seq.attention_map import attention_map, plot_attention
    from lmlab.seq2seq.model import load_seq2seq

    check_beam(beam)
    if out.suffix.lower() != ".png":
        raise LmlabError(f"--out must be a .png file, not {out.name}", param="out")
    if not text.strip():
        raise LmlabError("the source text is empty", param="text")
    amap = attention_map(load_seq2seq(run), text, beam=beam, alpha=alpha)
    plot_attention(amap, out)
    if as_json:
        emit_json({**asdict(amap), "out": str(out)})
        return
    print(amap.translation)
    print(f"saved {out}")


def eval_seq2seq(run: str, table: Path, *, beam: int, as_json: bool) -> None:
    """`lmlab eval RUN TABLE` for a sequence-to-sequence run: BLEU, chrF, the references'
    loss and perplexity, BLEU by source length."""
    from lmlab.runs import read_run
    from lmlab.seq2seq.evaluate import evaluate_translation
    from lmlab.seq2seq.model import load_seq2seq

    check_beam(beam)
    train = read_run(Path(run)).get("train", {})
    result = evaluate_translation(load_seq2seq(run), table, source_col=train.get("source_col"),
                                  target_col=train.get("target_col"), beam=beam)  # fmt: skip
    if as_json:
        emit_json({"model": run, "file": str(table), **result.to_dict()})
        return
    print(f"BLEU:          {result.bleu:.2f}")
    print(f"chrF:          {result.chrf:.2f}")
    print(f"perplexity:    {result.perplexity:.3f} (of the references)")
    print(f"loss:          {result.loss:.4f} nats/token")
    print(f"pairs:         {result.pairs:,} ({result.tokens:,} reference tokens)")
    for name, bleu in result.bleu_by_length.items():
        shown = f"{bleu:.2f}" if bleu is not None else "-"
        print(f"BLEU {name + ' words:':14s}{shown} ({result.pairs_by_length[name]:,} pairs)")
    decoding = f"beam {beam}" if beam > 1 else "greedy"
    print(f"decoding:      {decoding}")
