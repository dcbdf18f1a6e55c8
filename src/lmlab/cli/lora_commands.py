"""`lmlab train lora CORPUS... --base MODEL --out RUN`: LoRA adapters for a pretrained causal LM."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import JsonOpt, PatienceOpt, ProgressOpt, ResumeOpt, emit_json, train_app
from lmlab.models import DEFAULT_LM


@train_app.command("lora")
def train_lora_command(
    corpus: Annotated[list[Path], typer.Argument(help="UTF-8 text files to train on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    base: Annotated[
        str, typer.Option(help="The causal LM to adapt: a bundled name, .gguf file or folder.")
    ] = DEFAULT_LM,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default 100).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the text (sets steps).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per step.")] = 4,
    accumulate: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    context: Annotated[int, typer.Option(help="Tokens per training window.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-4,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 10,
    rank: Annotated[int, typer.Option(help="LoRA rank r.")] = 8,
    alpha: Annotated[float, typer.Option(help="LoRA scale: the update times alpha / r.")] = 16,
    valid: Annotated[Path | None, typer.Option(help="A validation text file.")] = None,
    valid_fraction: Annotated[
        float | None, typer.Option("--valid-fraction", help="Hold out the last F of the text.")
    ] = None,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help="Steps between validations (and checkpoints).")
    ] = 50,
    patience: PatienceOpt = None,
    seed: Annotated[int, typer.Option(help="Same seed, same adapters.")] = 1337,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto, float32, or bfloat16 (autocast; weights stay float32).")
    ] = "auto",
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Train LoRA adapters of a pretrained causal LM on CORPUS; the run loads as --model RUN."""
    from lmlab.lm.lora_lm import train_lora
    from lmlab.training.progress import ProgressBar
    from lmlab.training.results import TrainConfig, TrainingInterrupted

    steps = steps if steps is not None or epochs is not None else 100
    config = TrainConfig(steps=steps, epochs=epochs, batch_size=batch_size, accumulate=accumulate,
                         lr=lr, warmup=warmup, weight_decay=0.0, eval_every=eval_every,
                         patience=patience, seed=seed, device=device, dtype=dtype,
                         log_every=1)  # fmt: skip
    bar = ProgressBar() if progress and not as_json else False
    try:
        result = train_lora(base, corpus, out, context=context, r=rank, alpha=alpha,
                            config=config, valid=valid, valid_fraction=valid_fraction,
                            resume=resume, progress=bar)  # fmt: skip
    except TrainingInterrupted as e:  # Ctrl-C: the checkpoint is saved; say how to go on
        if os.environ.get("RANK", "0") == "0":
            print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun, process 0 reports
        return
    losses = [r["loss"] for r in result.history if "loss" in r]
    first = losses[0] if losses else result.train_loss
    if as_json:
        emit_json({**result.to_dict(), "first_loss": first})
        return
    if result.already_complete:
        print(f"lora on {base}: the run in {out} is already complete ({result.steps} steps)")
    else:
        valid_text = (
            f", valid loss {result.valid_loss:.4f}" if result.valid_loss is not None else ""
        )
        print(f"lora on {base}: {result.steps - result.first_step} steps in "
              f"{result.seconds:.1f} s, loss {first:.4f} -> {result.train_loss:.4f}"
              f"{valid_text}")  # fmt: skip
    print(f'saved in {out}; try: lmlab generate --model {out} "..."')
