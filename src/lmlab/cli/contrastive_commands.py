"""`lmlab train simcse` and `lmlab train contrastive`: sentence encoders tuned by contrastive
losses; and the STS task of `lmlab eval` (dispatched from eval_commands)."""

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
    emit_json,
    train_app,
)

EncoderOpt = Annotated[
    str,
    typer.Option(help="all-minilm-l6-v2, a transformers encoder folder, or a run (bert, ...)."),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")]
ValidOpt = Annotated[
    Path | None, typer.Option(help="An STS file to validate on (Spearman); keeps the best.")
]
MaxLengthOpt = Annotated[
    int | None, typer.Option("--max-length", help="Tokens per text (simcse 32, pairs 128).")
]
BatchOpt = Annotated[
    int | None,
    typer.Option("--batch-size", help="Texts (simcse, 64) or pairs (16) per step; 2 or more."),
]
EpochsOpt = Annotated[float | None, typer.Option(help="Passes over the data (default 1).")]
DtypeOpt = Annotated[str | None, typer.Option(help="auto, float32 or bfloat16.")]
TemperatureOpt = Annotated[float, typer.Option(help="InfoNCE's temperature.")]
OPTIONS = ("steps", "epochs", "batch_size", "accumulate", "lr", "warmup", "eval_every",
           "patience", "seed", "device", "dtype")  # fmt: skip


def _config(command: str, given: dict):
    from lmlab.contrastive.train import default_config

    return default_config(command, **{k: given[k] for k in OPTIONS if given.get(k) is not None})


def _report(command: str, result, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
        return
    valid = ""
    if result.valid_loss is not None:
        valid = f"  valid Spearman {100 * (1 - result.valid_loss):.2f}"
    print(
        f"{command}: {result.steps - result.first_step} steps in {result.seconds:.1f} s "
        f"({result.tokens_per_second:,.1f} texts/s)  train loss {result.train_loss:.4f}{valid}"
    )
    print(f"saved in {result.out} (an encoder: lmlab embed --model {result.out} ...)")


@train_app.command("simcse")
def train_simcse_command(
    sentences: Annotated[Path, typer.Argument(help="A text file, one sentence per line.")],
    out: OutOpt,
    encoder: EncoderOpt = "all-minilm-l6-v2",
    temperature: TemperatureOpt = 0.05,
    max_length: MaxLengthOpt = None,
    valid: ValidOpt = None,
    batch_size: BatchOpt = None,
    accumulate: AccumulateOpt = None,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Unsupervised SimCSE: each sentence twice through dropout, the rest of the batch as
    negatives (temperature 0.05); the run is an encoder (embed, similarity, index, ...)."""
    from lmlab.contrastive.train import train_simcse
    from lmlab.training import TrainingInterrupted

    config = _config("simcse", locals())
    try:
        result = train_simcse(sentences, out, encoder=encoder, temperature=temperature,
                              max_length=max_length, valid=valid, config=config, resume=resume,
                              progress=progress and not as_json)  # fmt: skip
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    _report("simcse", result, as_json)


@train_app.command("contrastive")
def train_contrastive_command(
    pairs: Annotated[
        Path,
        typer.Argument(help="text1, text2[, hard negative | score] rows (.tsv/.csv), or STS-B."),
    ],
    out: OutOpt,
    encoder: EncoderOpt = "all-minilm-l6-v2",
    loss: Annotated[
        str, typer.Option(help="auto (cosent for scored pairs, else mnr), mnr or cosent.")
    ] = "auto",
    temperature: TemperatureOpt = 0.05,
    scale: Annotated[float, typer.Option(help="CoSENT's scale (1 / temperature).")] = 20.0,
    max_length: MaxLengthOpt = None,
    valid: ValidOpt = None,
    batch_size: BatchOpt = None,
    accumulate: AccumulateOpt = None,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Tune an encoder on pairs: in-batch negatives (MultipleNegativesRanking, with a hard
    negative column if given), or CoSENT on scored pairs; the run is an encoder."""
    from lmlab.contrastive.train import train_contrastive
    from lmlab.training import TrainingInterrupted

    config = _config("contrastive", locals())
    try:
        result = train_contrastive(pairs, out, encoder=encoder, loss=loss,
                                   temperature=temperature, scale=scale, max_length=max_length,
                                   valid=valid, config=config, resume=resume,
                                   progress=progress and not as_json)  # fmt: skip
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    _report("contrastive", result, as_json)


def eval_sts(model: str, path: Path | None, as_json: bool) -> None:
    """`lmlab eval ENCODER FILE --task sts`: Spearman, Pearson, alignment, uniformity."""
    from lmlab.contrastive.sts import evaluate_sts
    from lmlab.errors import LmlabError

    if path is None:
        raise LmlabError("--task sts needs an STS file: text1,text2,score rows or STS-B's own")
    result = evaluate_sts(model, path)
    if as_json:
        emit_json(result)
        return
    print(f"spearman:   {result['spearman']:.2f}")
    print(f"pearson:    {result['pearson']:.2f}")
    print(f"alignment:  {result['alignment']:.4f} ({result['positive_pairs']} positive pairs)")
    print(f"uniformity: {result['uniformity']:.4f}")
    print(f"pairs:      {result['pairs']:,}")
