"""`lmlab train KIND CORPUS... --out RUN`: train a neural language model from scratch."""

from __future__ import annotations

import os
import sys
import tomllib
import typing
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
from lmlab.errors import LmlabError
from lmlab.lm.neural import MODELS, TRAIN_CLI_OPTIONS

TRAIN_OPTIONS = (
    "steps",
    "epochs",
    "batch_size",
    "accumulate",
    "lr",
    "warmup",
    "optimizer",
    "weight_decay",
    "grad_clip",
    "eval_every",
    "patience",
    "seed",
    "device",
    "dtype",
)
RUN_OPTIONS = (
    "init_from",
    "freeze",
    "tokenizer",
    "vocab_size",
    "valid",
    "valid_fraction",
    "preset",
)


def _command(kind: str):
    def command(
        corpus: Annotated[list[Path], typer.Argument(help="UTF-8 text files to train on.")],
        out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
        tokenizer: Annotated[
            str | None,
            typer.Option(help="A tokenizer folder, or train one: char, word, bpe, byte-bpe."),
        ] = None,
        vocab_size: Annotated[
            int | None, typer.Option("--vocab-size", help="For a tokenizer trained here.")
        ] = None,
        valid: Annotated[Path | None, typer.Option(help="A validation text file.")] = None,
        valid_fraction: Annotated[
            float | None, typer.Option("--valid-fraction", help="Hold out the last F of the text.")
        ] = None,
        preset: Annotated[str | None, typer.Option(help="A named model size, e.g. tiny.")] = None,
        layers: Annotated[int | None, typer.Option(help="Layers.")] = None,
        heads: Annotated[int | None, typer.Option(help="Attention heads.")] = None,
        dim: Annotated[int | None, typer.Option(help="Model width.")] = None,
        context: Annotated[int | None, typer.Option(help="Tokens per training window.")] = None,
        dropout: Annotated[float | None, typer.Option(help="Dropout probability.")] = None,
        hidden: Annotated[int | None, typer.Option(help="MLP: size of the tanh layer.")] = None,
        positions: Annotated[
            str | None, typer.Option(help="GPT: learned, sinusoidal or rope (rotary).")
        ] = None,
        nsp: Annotated[
            bool | None,
            typer.Option("--nsp", help="BERT: also train next-sentence prediction."),
        ] = None,
        batch_size: Annotated[
            int | None, typer.Option("--batch-size", help="Windows per step.")
        ] = None,
        accumulate: AccumulateOpt = None,
        steps: StepsOpt = None,
        epochs: Annotated[float | None, typer.Option(help="Passes over the text.")] = None,
        lr: LrOpt = None,
        warmup: WarmupOpt = None,
        optimizer: Annotated[
            str | None, typer.Option(help="adamw, or sgd (plain SGD; try --lr 20).")
        ] = None,
        weight_decay: Annotated[
            float | None,
            typer.Option("--weight-decay", help="Default 0.1 for adamw (decoupled), 0 for sgd."),
        ] = None,
        grad_clip: Annotated[
            float | None, typer.Option("--grad-clip", help="Gradient norm limit; 0 disables.")
        ] = None,
        eval_every: EvalEveryOpt = None,
        patience: PatienceOpt = None,
        seed: TrainSeedOpt = None,
        device: DeviceOpt = None,
        dtype: Annotated[
            str | None,
            typer.Option(
                help="auto (bfloat16 on a CPU with AVX512-BF16 or AMX, or a GPU that has it; "
                "else float32), float32, or bfloat16 (autocast; weights stay float32)."
            ),
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", help="A TOML file of these options.")
        ] = None,
        resume: ResumeOpt = False,
        init_from: Annotated[
            Path | None,
            typer.Option("--init-from", help="Fine-tune: start from this run's weights."),
        ] = None,
        freeze: Annotated[
            int | None, typer.Option(help="Keep the embeddings and the first K blocks fixed.")
        ] = None,
        progress: ProgressOpt = True,
        as_json: JsonOpt = False,
    ) -> None:
        from lmlab.training import TrainConfig, TrainingInterrupted, train
        from lmlab.training.progress import ProgressBar

        given = {k: v for k, v in locals().items() if v is not None}
        options = {**_read_toml(config, _option_types(command)), **given}
        model_options = {
            TRAIN_CLI_OPTIONS[k]: options[k] for k in TRAIN_CLI_OPTIONS if k in options
        }
        train_config = TrainConfig(**{k: options[k] for k in TRAIN_OPTIONS if k in options})
        run = {k: options[k] for k in RUN_OPTIONS if k in options}
        main = os.environ.get("RANK", "0") == "0"  # under torchrun, process 0 reports
        try:
            result = train(
                kind,
                options["corpus"],
                options["out"],
                model_options=model_options,
                config=train_config,
                resume=options["resume"],
                progress=ProgressBar() if options["progress"] and not options["as_json"] else False,
                **run,
            )
        except TrainingInterrupted as e:  # Ctrl-C: the checkpoint is saved; say how to go on
            if main:
                print(e, file=sys.stderr)
            raise typer.Exit(130) from None
        if not main:
            return
        if options["as_json"]:
            emit_json(result.to_dict())
            return
        print(_summary(kind, result))
        if kind == "bert":
            print(f"saved in {result.out}; in Python: lmlab.load_masked_lm({str(result.out)!r})")
        else:
            print(f'saved in {result.out}; try: lmlab generate --model {result.out} "..."')

    name = {"mlp": "an MLP", "rnn": "an RNN", "lstm": "an LSTM"}.get(kind, f"a {kind.upper()}")
    command.__doc__ = f"Train {name} language model on CORPUS files; write the run to --out."
    return command


def _summary(kind: str, result) -> str:
    """The line printed after training: the steps this command ran, time, speed, losses."""
    if result.already_complete:
        head = f"{kind}: the run in {result.out} is already complete ({result.steps} steps)"
    else:
        resumed = f" (resumed at step {result.first_step}, now at {result.steps})"
        head = (
            f"{kind}: {result.steps - result.first_step} steps"
            f"{resumed if result.first_step else ''} in {result.seconds:.1f} s "
            f"({result.tokens_per_second:,.0f} tokens/s)"
        )
    valid_text = ""
    if result.valid_loss is not None:
        valid_text = (
            f"  valid loss {result.valid_loss:.4f}  perplexity {result.valid_perplexity:.2f}"
        )
    return (
        f"{head}  train loss {result.train_loss:.4f}"
        f"{valid_text}{'  (stopped early)' if result.stopped_early else ''}"
    )


def _option_types(command) -> dict[str, type]:
    """The value type of each option of a train command (int, float, str, bool or Path), read
    from its annotations: what the command line would accept for the same name."""
    hints = typing.get_type_hints(command)
    return {
        name: next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
        for name, hint in hints.items()
        if name != "return"
    }


TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false"}


def _read_toml(path: Path | None, types: dict[str, type]) -> dict:
    """Options from a TOML file (keys as the long options, with - or _), each of the type its
    command-line option takes (`types`); ranges are checked with the command line's."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise LmlabError(f"cannot read config {path}: {e}") from None
    known = set(TRAIN_CLI_OPTIONS) | set(TRAIN_OPTIONS) | set(RUN_OPTIONS)
    unknown = sorted(k for k in data if k.replace("-", "_") not in known)
    if unknown:
        raise LmlabError(f"unknown option(s) in {path}: {', '.join(unknown)}")
    options = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        want = types[name]
        if not _is_a(value, want):
            raise LmlabError(
                f"{key} in {path} must be {TYPE_NAMES.get(want, 'a string')}, got {value!r}"
            )
        options[name] = Path(value) if want is Path else value
    return options


def _is_a(value, want: type) -> bool:
    """Whether a TOML value has the type `want` (a bool is no number; an int is a float)."""
    if isinstance(value, bool) or want is bool:
        return isinstance(value, bool) and want is bool
    if want is float:
        return isinstance(value, int | float)
    return isinstance(value, int if want is int else str)


for _kind in MODELS:
    train_app.command(_kind)(_command(_kind))
