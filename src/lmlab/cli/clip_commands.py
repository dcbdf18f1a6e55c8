"""`lmlab train clip IMAGES CAPTIONS --out RUN`: an image tower aligned with a text encoder."""

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
from lmlab.cli.train_commands import TRAIN_OPTIONS
from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER

TOWER_OPTIONS = {  # option -> field of the tower's config (CNNConfig, ViTConfig)
    "image_size": "image_size",
    "channels": "channels",
    "widths": "widths",
    "patch": "patch",
    "layers": "n_layer",
    "heads": "n_head",
    "width": "n_embd",
}


@train_app.command("clip")
def train_clip_command(
    images: Annotated[
        Path, typer.Argument(help="A folder of PNG/JPEG files, a .npy array or an IDX file.")
    ],
    captions: Annotated[
        Path,
        typer.Argument(
            help="One per image, in order (a folder: by file name): a text file of captions, "
            "or labels (.npy, IDX, or a text file with --labels)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    image_encoder: Annotated[str, typer.Option("--image-encoder", help="cnn or vit.")] = "cnn",
    text_encoder: Annotated[
        str, typer.Option("--text-encoder", help="An encoder name or folder.")
    ] = DEFAULT_ENCODER,
    freeze_text: Annotated[
        bool,
        typer.Option(
            "--freeze-text", help="Keep the text encoder fixed (its vectors computed once)."
        ),
    ] = False,
    labels: Annotated[
        bool, typer.Option("--labels", help="CAPTIONS holds labels: make captions by templates.")
    ] = False,
    template: Annotated[
        list[str] | None,
        typer.Option(help="A caption template with {label} (repeatable; implies --labels)."),
    ] = None,
    classes: Annotated[
        Path | None,
        typer.Option(help="Names of the labels: line i names class i, synonyms split by '|'."),
    ] = None,
    preset: Annotated[str | None, typer.Option(help="The tower's size: tiny or small.")] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Resize images to this square side.")
    ] = None,
    channels: Annotated[int | None, typer.Option(help="1 (grey) or 3 (RGB).")] = None,
    widths: Annotated[
        str | None, typer.Option(help="cnn: channels per stage, e.g. 32,64,128.")
    ] = None,
    patch: Annotated[int | None, typer.Option(help="vit: patch side.")] = None,
    layers: Annotated[int | None, typer.Option(help="vit: Transformer blocks.")] = None,
    heads: Annotated[int | None, typer.Option(help="vit: attention heads.")] = None,
    width: Annotated[int | None, typer.Option(help="vit: model width.")] = None,
    dim: Annotated[int, typer.Option(help="The shared space's dimension.")] = 128,
    valid_fraction: Annotated[
        float, typer.Option("--valid-fraction", help="Images held out for validation.")
    ] = 0.05,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Pairs per step (default 256).")
    ] = None,
    accumulate: AccumulateOpt = None,
    steps: StepsOpt = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the images.")] = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Align an image encoder with a text encoder (CLIP-style); write the run to --out.

    The run embeds texts and images into one space: use it as --model / --encoder of embed,
    index, search, map and classify (zero-shot via cosine)."""
    from lmlab.training import TrainingInterrupted
    from lmlab.training.clip import clip_config, train_clip

    given = {k: v for k, v in locals().items() if v is not None}
    if "widths" in given:
        try:
            given["widths"] = [int(w) for w in widths.split(",") if w.strip()]
        except ValueError:
            raise LmlabError("--widths takes numbers: 32,64,128", param="widths") from None
    tower = {field: given[k] for k, field in TOWER_OPTIONS.items() if k in given}
    config = clip_config(**{k: given[k] for k in TRAIN_OPTIONS if k in given})
    try:
        result = train_clip(images, captions, out, image_encoder=image_encoder,
                            text_encoder=text_encoder, freeze_text=freeze_text, preset=preset,
                            image_options=tower, dim=dim, labels=labels or None,
                            templates=template, classes=classes, valid_fraction=valid_fraction,
                            config=config, resume=resume,
                            progress=progress and not as_json)  # fmt: skip
    except TrainingInterrupted as e:  # Ctrl-C: the checkpoint is saved; say how to go on
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    if as_json:
        emit_json(result.to_dict())
        return
    print(summary(result))
    print(f"saved in {result.out}")


def summary(result) -> str:
    """The line printed after training: steps, time, speed, losses, zero-shot accuracy."""
    if result.already_complete:
        return f"clip: the run in {result.out} is already complete ({result.steps} steps)"
    resumed = f" (resumed at step {result.first_step})" if result.first_step else ""
    line = (
        f"clip: {result.steps - result.first_step} steps{resumed} in {result.seconds:.1f} s "
        f"({result.tokens_per_second:,.0f} pairs/s)  train loss {result.train_loss:.4f}"
    )
    final = next((r for r in reversed(result.history) if r.get("final")), {})
    if result.valid_loss is not None:
        line += f"  valid loss {result.valid_loss:.4f}"
    if "valid_zero_shot_accuracy" in final:
        line += f"  zero-shot accuracy {final['valid_zero_shot_accuracy']:.3f}"
    return line
