"""`lmlab export MODEL --out model.gguf [--type f16|q8_0]`: a tuned run as a GGUF file, so that
llama.cpp serves it (`lmlab serve --model model.gguf`)."""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import JsonOpt, app, emit_json


class ExportType(StrEnum):
    f16 = "f16"
    q8_0 = "q8_0"


@app.command("export")
def export_command(
    model: Annotated[
        str, typer.Argument(help="A run of lmlab train sft, dpo or lora; a .gguf file or folder.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The .gguf file to write (its folder must exist).")
    ],
    type: Annotated[
        ExportType,
        typer.Option("--type", help="f16, or q8_0 (8-bit blocks: half the size, near-same)."),
    ] = ExportType.f16,
    as_json: JsonOpt = False,
) -> None:
    """Write MODEL as a GGUF file llama.cpp runs (LoRA adapters merged into the weights)."""
    from lmlab.lm.gguf_export import export_gguf

    result = export_gguf(model, out, type=type.value)
    if as_json:
        emit_json({k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()})
        return
    print(f"{model} -> {out}: {result.architecture}, {result.parameters / 1e6:.1f}M parameters "
          f"as {result.type}, {result.bytes / 1e6:.0f} MB (vocabulary of "
          f"{result.vocabulary.name})")  # fmt: skip
    print(f'try: lmlab generate --model {out} "..."  or  lmlab serve --model {out}')
