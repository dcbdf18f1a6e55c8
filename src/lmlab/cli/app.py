"""The Typer app, its sub-apps and the options that several commands share."""

from __future__ import annotations

import json
import math
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(
    name="lmlab",
    help="Language models and text embeddings on your own machine, offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
train_app = typer.Typer(
    help="Train a model on your own corpus.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(train_app, name="train")


class BackendChoice(StrEnum):
    auto = "auto"
    torch = "torch"
    llama = "llama"


# Options shared by several commands.
ModelOpt = Annotated[
    str, typer.Option("--model", "-m", help="Bundled name, .gguf file or model folder.")
]
BackendOpt = Annotated[
    BackendChoice,
    typer.Option(help="For GGUF models: llama (llama.cpp, default when installed) or torch."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
MaxTokensOpt = Annotated[int, typer.Option("--max-tokens", help="Most new tokens per sample.")]
# Sampling options left out take the model's defaults, as in the library and the server
# (lmlab.sampling_defaults; --sampling-defaults picks another source).
TemperatureOpt = Annotated[
    float | None, typer.Option(help="0 means greedy. Default: see --sampling-defaults.")
]
TopKOpt = Annotated[
    int | None, typer.Option("--top-k", help="Keep the k most likely tokens; 0 keeps all.")
]
TopPOpt = Annotated[
    float | None, typer.Option("--top-p", help="Nucleus: keep tokens up to this mass.")
]
MinPOpt = Annotated[
    float | None, typer.Option("--min-p", help="Drop tokens below min-p x the top one.")
]
RepPenaltyOpt = Annotated[
    float | None, typer.Option("--repetition-penalty", help="> 1 discourages repeats.")
]


class SamplingDefaultsChoice(StrEnum):
    model = "model"
    llama_cpp = "llama.cpp"
    openai = "openai"


def sampling_defaults_help(left_out: str) -> str:
    """The --sampling-defaults help: where `left_out` take their values, for each choice."""
    from lmlab.models import BUNDLED
    from lmlab.sampling_defaults import LLAMA_CPP, OPENAI, recommended

    bundled = "; ".join(
        f"{m.name}: {recommended(m.sampling, 'model card').describe()}"
        for m in BUNDLED.values()
        if m.sampling
    )
    return (
        f"Values for {left_out}: model = the model's recommended settings (a folder's "
        "generation_config.json, a GGUF file's general.sampling.* keys, a bundled model's card; "
        f"{bundled}), else llama.cpp's; llama.cpp = {LLAMA_CPP.describe()}; "
        f"openai = {OPENAI.describe()}. A temperature given turns off the filters not given, "
        "as on OpenAI."
    )


SamplingDefaultsOpt = Annotated[
    SamplingDefaultsChoice,
    typer.Option(
        "--sampling-defaults", help=sampling_defaults_help("the sampling options not given")
    ),
]
SeedOpt = Annotated[int | None, typer.Option(help="Same seed, same text.")]


class SpeculativeChoice(StrEnum):
    prompt_lookup = "prompt-lookup"


# Speculative decoding of one stream (lmlab.speculative).
SpeculativeOpt = Annotated[
    SpeculativeChoice | None,
    typer.Option(
        help="prompt-lookup: draft tokens copied from what followed the text's last 5 tokens "
        "earlier in the prompt or answer, checked in one forward pass (faster when the answer "
        "copies its input; same greedy text, same sampling distribution)."
    ),
]
DraftModelOpt = Annotated[
    str | None,
    typer.Option(
        "--draft-model",
        help="Speculative decoding with drafts by this smaller model (same tokenizer).",
    ),
]
NumDraftOpt = Annotated[
    int | None,
    typer.Option(
        "--num-draft",
        help="Most tokens drafted per step (default: 12 by prompt lookup, 4 by a draft model).",
    ),
]
StopOpt = Annotated[
    list[str] | None, typer.Option("--stop", help="Stop at this string (repeatable).")
]


def emit_json(data: object) -> None:
    """Print `data` as strict JSON: an infinite or undefined number (the perplexity of text an
    unsmoothed model cannot produce) is null, which every JSON reader accepts."""
    print(json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False))


def _finite(data: object) -> object:
    """`data` with every non-finite float replaced by None, in nested dicts and lists."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


# The training loop's options, shared by every `lmlab train` command.
AccumulateOpt = Annotated[int | None, typer.Option(help="Micro-batches per optimizer step.")]
StepsOpt = Annotated[int | None, typer.Option(help="Optimizer steps.")]
LrOpt = Annotated[float | None, typer.Option(help="Peak learning rate.")]
WarmupOpt = Annotated[int | None, typer.Option(help="Warm-up steps.")]
EvalEveryOpt = Annotated[
    int | None, typer.Option("--eval-every", help="Steps between validations.")
]
PatienceOpt = Annotated[
    int | None, typer.Option(help="Stop after this many validations without progress.")
]
TrainSeedOpt = Annotated[int | None, typer.Option(help="Same seed, same weights.")]
DeviceOpt = Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --out.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show a progress bar.")]

AllOpt = Annotated[
    bool, typer.Option("--all", help="Print every row of a long table (default: first and last).")
]
SHOWN_ROWS = 10  # rows shown at each end of a long table


def table_rows(rows: list, show_all: bool = False) -> tuple[list, str | None]:
    """The rows a long table prints: all of them with --all, else the first and last
    SHOWN_ROWS with None where the rest were left out; and the line that says so (None when
    every row is shown). Every CLI table that can run to hundreds of rows goes through here."""
    if show_all or len(rows) <= 2 * SHOWN_ROWS + 5:  # never hide a handful of rows
        return list(rows), None
    left_out = len(rows) - 2 * SHOWN_ROWS
    note = f"({left_out:,} of {len(rows):,} rows not shown: --all prints them, --json gives all)"
    return [*rows[:SHOWN_ROWS], None, *rows[-SHOWN_ROWS:]], note


def load(model: str, backend: BackendChoice):
    from lmlab.models import load_lm

    return load_lm(model, backend=backend.value)
