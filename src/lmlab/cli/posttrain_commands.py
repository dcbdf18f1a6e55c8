"""Post-training: `lmlab train sft|dpo|reward DATA --base MODEL --out RUN`, and
`lmlab prefs make PROMPTS --model M --judge rules|MODEL --out PREFS`."""

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
from lmlab.models import DEFAULT_LM

prefs_app = typer.Typer(
    help="Make preference data for DPO and reward models.", no_args_is_help=True,
    rich_markup_mode=None,
)  # fmt: skip
app.add_typer(prefs_app, name="prefs")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")]
BaseOpt = Annotated[
    str,
    typer.Option(help="The causal LM to tune: a bundled name, .gguf, folder or a tuned run."),
]
LoraOpt = Annotated[
    bool, typer.Option("--lora/--full", help="Train LoRA adapters (default) or every weight.")
]
RankOpt = Annotated[int, typer.Option(help="LoRA rank r.")]
AlphaOpt = Annotated[float, typer.Option(help="LoRA scale: the update times alpha / r.")]
EpochsOpt = Annotated[float | None, typer.Option(help="Passes over the rows (sets steps).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Rows per micro-batch.")]
ValidOpt = Annotated[Path | None, typer.Option(help="A JSONL file of held-out rows.")]
ValidFractionOpt = Annotated[
    float, typer.Option("--valid-fraction", help="Hold out this fraction of the rows (seeded).")
]
MaxLengthOpt = Annotated[
    int, typer.Option("--max-length", help="Drop rows longer than this many tokens (counted).")
]
DtypeOpt = Annotated[str, typer.Option(help="auto, float32, or bfloat16 (autocast).")]


def _train(kind: str, data: Path, out: Path, base: str, lora: bool, rank: int, alpha: float,
           steps, epochs, batch_size, accumulate, lr, warmup, valid, valid_fraction, max_length,
           eval_every, patience, seed, device, dtype, resume, progress, as_json,
           **extra) -> None:  # fmt: skip
    from lmlab.posttrain import train as T
    from lmlab.training.progress import ProgressBar
    from lmlab.training.results import TrainConfig, TrainingInterrupted

    steps = steps if steps is not None or epochs is not None else 100
    default_lr = 2e-4 if lora else 2e-5
    if kind == "dpo":
        default_lr = 5e-5 if lora else 5e-7
    config = TrainConfig(steps=steps, epochs=epochs, batch_size=batch_size,
                         accumulate=accumulate or 1, lr=lr or default_lr,
                         warmup=10 if warmup is None else warmup, weight_decay=0.0,
                         eval_every=eval_every or 50, patience=patience,
                         seed=1337 if seed is None else seed, device=device or "auto",
                         dtype=dtype, log_every=1)  # fmt: skip
    train = {"sft": T.train_sft, "dpo": T.train_dpo, "reward": T.train_reward}[kind]
    bar = ProgressBar("rows_s") if progress and not as_json else False
    lora_options = {**T.LORA, "r": rank, "alpha": alpha} if lora else False
    try:
        result = train(data, out, base=base, lora=lora_options, config=config, valid=valid,
                       valid_fraction=None if valid is not None else valid_fraction,
                       max_length=max_length, resume=resume, progress=bar, **extra)  # fmt: skip
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    final = next((r for r in reversed(result.history) if r.get("final")), {})
    if as_json:
        emit_json({**result.to_dict(), **{k: v for k, v in final.items() if k != "final"}})
        return
    if result.already_complete:
        print(f"{kind} on {base}: the run in {out} is already complete ({result.steps} steps)")
    else:
        valid_text = (
            f", valid loss {result.valid_loss:.4f}" if result.valid_loss is not None else ""
        )
        if "valid_accuracy" in final:
            valid_text += (f", preference accuracy {final['valid_accuracy']:.3f}, "
                           f"reward margin {final['valid_reward_margin']:.3f}")  # fmt: skip
        print(f"{kind} on {base}: {result.steps - result.first_step} steps in "
              f"{result.seconds:.1f} s, loss {result.train_loss:.4f}{valid_text}")  # fmt: skip
    if kind == "reward":
        print(f'saved in {out}; try: lmlab generate --best-of 4 --reward {out} "..."')
    else:
        print(f'saved in {out}; try: lmlab chat --model {out} "..."')


@train_app.command("sft")
def train_sft_command(
    data: Annotated[Path, typer.Argument(help="JSONL: {messages: [...]} or prompt/completion.")],
    out: OutOpt,
    base: BaseOpt = DEFAULT_LM,
    lora: LoraOpt = True,
    rank: RankOpt = 8,
    alpha: AlphaOpt = 16,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 4,
    accumulate: AccumulateOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    valid: ValidOpt = None,
    valid_fraction: ValidFractionOpt = 0.1,
    max_length: MaxLengthOpt = 1024,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Instruction-tune a chat model on conversations (loss on the assistant's tokens only)."""
    _train("sft", data, out, base, lora, rank, alpha, steps, epochs, batch_size, accumulate, lr,
           warmup, valid, valid_fraction, max_length, eval_every, patience, seed, device, dtype,
           resume, progress, as_json)  # fmt: skip


@train_app.command("dpo")
def train_dpo_command(
    data: Annotated[Path, typer.Argument(help="JSONL: prompt, chosen, rejected (TRL's format).")],
    out: OutOpt,
    base: BaseOpt = DEFAULT_LM,
    beta: Annotated[float, typer.Option(help="How strongly the policy stays near the base.")] = 0.1,
    lora: LoraOpt = True,
    rank: RankOpt = 8,
    alpha: AlphaOpt = 16,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 4,
    accumulate: AccumulateOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    valid: ValidOpt = None,
    valid_fraction: ValidFractionOpt = 0.1,
    max_length: MaxLengthOpt = 1024,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Tune a causal LM on preference pairs by DPO (the reference: the base, adapters off)."""
    _train("dpo", data, out, base, lora, rank, alpha, steps, epochs, batch_size, accumulate, lr,
           warmup, valid, valid_fraction, max_length, eval_every, patience, seed, device, dtype,
           resume, progress, as_json, beta=beta)  # fmt: skip


@train_app.command("reward")
def train_reward_command(
    data: Annotated[Path, typer.Argument(help="JSONL: prompt, chosen, rejected (TRL's format).")],
    out: OutOpt,
    base: BaseOpt = DEFAULT_LM,
    lora: LoraOpt = True,
    rank: RankOpt = 8,
    alpha: AlphaOpt = 16,
    steps: StepsOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = 4,
    accumulate: AccumulateOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    valid: ValidOpt = None,
    valid_fraction: ValidFractionOpt = 0.1,
    max_length: MaxLengthOpt = 1024,
    eval_every: EvalEveryOpt = None,
    patience: PatienceOpt = None,
    seed: TrainSeedOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "auto",
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Train a Bradley-Terry reward model (a score head on the LM) on preference pairs."""
    _train("reward", data, out, base, lora, rank, alpha, steps, epochs, batch_size, accumulate,
           lr, warmup, valid, valid_fraction, max_length, eval_every, patience, seed, device,
           dtype, resume, progress, as_json)  # fmt: skip


def print_best_of(lm, prompt: str, n: int | None, reward: str | None, options: dict,
                  as_json: bool) -> None:  # fmt: skip
    """`lmlab generate --best-of N --reward RUN`: the best of N samples by the reward model."""
    from lmlab.errors import LmlabError
    from lmlab.posttrain.reward import best_of

    if n is None or reward is None:
        raise LmlabError("--best-of N and --reward RUN go together")
    options = {k: v for k, v in options.items() if k != "n"}
    ranked = best_of(lm, prompt, n, reward, **options)
    if as_json:
        emit_json({"prompt": prompt, "best": ranked[0][1].text,
                   "samples": [{"reward": r, "text": c.text, "finish_reason": c.finish_reason}
                               for r, c in ranked]})  # fmt: skip
        return
    print(ranked[0][1].text)
    print(f"(the best of {n} samples by {reward}: reward {ranked[0][0]:.3f}; "
          f"the worst {ranked[-1][0]:.3f})", file=sys.stderr)  # fmt: skip


@prefs_app.command("make")
def prefs_make_command(
    prompts: Annotated[Path, typer.Argument(help="JSONL: prompt, and constraints for rules.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The preference pairs to write.")],
    model: Annotated[str, typer.Option(help="The model whose answers are sampled.")] = DEFAULT_LM,
    samples: Annotated[int, typer.Option(help="Answers sampled per prompt.")] = 4,
    judge: Annotated[
        str, typer.Option(help="rules (the row's constraints) or a judge model (yes/no).")
    ] = "rules",
    judge_prompt: Annotated[
        Path | None,
        typer.Option("--judge-prompt", help="A text file with {prompt} and {answer} in it."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Most tokens per answer.")] = 128,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.8,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Same seed, same samples.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Sample answers to PROMPTS and keep the best and worst as preference pairs (TRL format)."""
    from dataclasses import asdict

    from lmlab.posttrain.prefs import JUDGE_PROMPT, make_prefs

    template = judge_prompt.read_text() if judge_prompt is not None else JUDGE_PROMPT
    result = make_prefs(prompts, out, model=model, samples=samples, judge=judge,
                        judge_prompt=template, max_tokens=max_tokens, temperature=temperature,
                        top_p=top_p, seed=seed)  # fmt: skip
    if as_json:
        emit_json(asdict(result))
        return
    print(f"{result.pairs} pairs from {result.prompts} prompts ({result.samples} samples each, "
          f"judged by {judge}); {result.ties} prompts gave no pair (every sample scored the "
          f"same); written to {out}")  # fmt: skip
