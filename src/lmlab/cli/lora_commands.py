"""`lmlab train lora CORPUS... --base MODEL --out RUN`: LoRA adapters for a pretrained causal LM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import JsonOpt, emit_json, train_app
from lmlab.models import DEFAULT_LM


@train_app.command("lora")
def train_lora_command(
    corpus: Annotated[list[Path], typer.Argument(help="UTF-8 text files to train on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    base: Annotated[
        str, typer.Option(help="The causal LM to adapt: a bundled name, .gguf file or folder.")
    ] = DEFAULT_LM,
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 100,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per step.")] = 4,
    context: Annotated[int, typer.Option(help="Tokens per training window.")] = 256,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-4,
    warmup: Annotated[int, typer.Option(help="Warm-up steps.")] = 10,
    rank: Annotated[int, typer.Option(help="LoRA rank r.")] = 8,
    alpha: Annotated[float, typer.Option(help="LoRA scale: the update times alpha / r.")] = 16,
    seed: Annotated[int, typer.Option(help="Same seed, same adapters.")] = 1337,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train LoRA adapters of a pretrained causal LM on CORPUS; the run loads as --model RUN."""
    from lmlab.lm.lora_lm import train_lora
    from lmlab.training import TrainConfig

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup,
                         weight_decay=0.0, seed=seed, device=device)  # fmt: skip
    result = train_lora(base, corpus, out, context=context, r=rank, alpha=alpha, config=config,
                        progress=progress and not as_json)  # fmt: skip
    if as_json:
        emit_json(result)
        return
    print(f"lora on {base}: {result['steps']} steps in {result['seconds']:.1f} s, loss "
          f"{result['first_loss']:.4f} -> {result['train_loss']:.4f}")  # fmt: skip
    print(f'saved in {out}; try: lmlab generate --model {out} "..."')
