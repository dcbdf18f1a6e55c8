"""Default sampling: what a call or request that leaves a sampling field out gets.

A sampling field (temperature, top-k, top-p, min-p, repetition penalty) that is not given takes
a default from one of three sources, the `sampling_defaults` choice of the library, the CLI and
the server:

- `model` (the default): the model's own recommendation, as vLLM applies a model's
  generation_config: a Hugging Face folder's generation_config.json, a GGUF file's
  `general.sampling.*` keys, or for a bundled model the settings its model card shows
  (`lmlab.models.BUNDLED`). The fields a recommendation names take its values, the others are
  off (top-k 0, top-p 1, min-p 0, no penalty). A model with no recommendation gets llama.cpp's.
- `llama.cpp`: llama.cpp's defaults, temperature 0.8, top-k 40, top-p 0.95, min-p 0.05.
- `openai`: OpenAI's API, temperature 1 with no filtering (lmlab's server and library before).

A field given explicitly is always used as it is; each field left out takes the default, field
by field (`SamplingParams.with_defaults`), as vLLM and llama.cpp's server do: `temperature=1`
alone keeps the model's recommended top-p; send `top_p=1` too for the whole distribution.

This module does not import torch: the CLI builds its help from it.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmlab.errors import LmlabError

if TYPE_CHECKING:
    from lmlab.lm.base import LanguageModel

FIELDS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")
CHOICES = ("model", "llama.cpp", "openai")


@dataclass(frozen=True)
class SamplingDefaults:
    """Values for the sampling fields a call leaves out, and where they come from."""

    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    min_p: float = 0.0  # 0: off
    repetition_penalty: float = 1.0  # 1: off
    source: str = "openai"  # shown by `lmlab serve` and GET /v1/models

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """`temperature 0.2, top-p 0.9`: the temperature and every filter that is on."""
        parts = [f"temperature {self.temperature:g}"]
        if self.top_k:
            parts.append(f"top-k {self.top_k}")
        if self.top_p < 1:
            parts.append(f"top-p {self.top_p:g}")
        if self.min_p > 0:
            parts.append(f"min-p {self.min_p:g}")
        if self.repetition_penalty != 1:
            parts.append(f"repetition penalty {self.repetition_penalty:g}")
        if parts == ["temperature 1"]:
            parts.append("no filtering")
        return ", ".join(parts)


# llama.cpp's common_params_sampling defaults (and llama-server's for a request without them)
LLAMA_CPP = SamplingDefaults(0.8, 40, 0.95, 0.05, source="llama.cpp")
# OpenAI's API: temperature 1, every other field off
OPENAI = SamplingDefaults(source="openai")

# the `general.sampling.*` keys llama.cpp writes into GGUF files, by lmlab's field names
GGUF_KEYS = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_k": "top_k",
    "general.sampling.top_p": "top_p",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repetition_penalty",
}
# the values each field may take (a recommendation outside them is ignored, field by field)
_VALID = {
    "temperature": lambda v: v >= 0,
    "top_k": lambda v: v >= 0 and v == int(v),
    "top_p": lambda v: 0 < v <= 1,
    "min_p": lambda v: 0 <= v <= 1,
    "repetition_penalty": lambda v: v > 0,
}


def recommended(values: Mapping[str, Any], source: str) -> SamplingDefaults | None:
    """A model's recommendation from the fields it names (others off); None if it names none.

    Values that are not numbers or are out of range are skipped: a model file's odd value must
    not make every request fail.
    """
    fields: dict[str, Any] = {}
    for name in FIELDS:
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number) and _VALID[name](number):
            fields[name] = int(number) if name == "top_k" else number
    return SamplingDefaults(**fields, source=source) if fields else None


def from_generation_config(folder: str | Path) -> SamplingDefaults | None:
    """The recommendation in a Hugging Face folder's generation_config.json, if any.

    As vLLM, the sampling fields the file names are taken and `do_sample` is not read
    (transformers writes only the fields that differ from its own defaults).
    """
    path = Path(folder) / "generation_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return recommended(config, "generation_config.json")


def from_gguf_metadata(metadata: Mapping[str, Any]) -> SamplingDefaults | None:
    """The recommendation in a GGUF file's `general.sampling.*` keys, if any."""
    values = {field: metadata[key] for key, field in GGUF_KEYS.items() if key in metadata}
    return recommended(values, "GGUF metadata")


def from_gguf_file(path: str | Path) -> SamplingDefaults | None:
    """The recommendation in a GGUF file's metadata (the torch backend's way; the llama backend
    asks llama.cpp). Read directly from the header: `gguf.GGUFReader` parses every tensor and
    tokenizer entry first, which took 17 s for the bundled file on a busy 2-core VM."""
    try:
        metadata = _gguf_scalars(Path(path), set(GGUF_KEYS))
    except (OSError, ValueError, struct.error):  # unreadable: the model load reports it
        return None
    return from_gguf_metadata(metadata)


# GGUF value types (github.com/ggml-org/ggml docs/gguf.md): scalar struct formats by type id
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
                 12: "d"}  # fmt: skip
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_scalars(path: Path, wanted: set[str]) -> dict[str, Any]:
    """The scalar metadata values of `wanted` keys in a little-endian GGUF file (v2, v3)."""
    import mmap

    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data[:4] != b"GGUF" or struct.unpack_from("<I", data, 4)[0] not in (2, 3):
            raise ValueError("not a GGUF v2/v3 file")
        (count,) = struct.unpack_from("<Q", data, 16)
        at, found = 24, {}

        def read(fmt: str) -> Any:
            nonlocal at
            (value,) = struct.unpack_from("<" + fmt, data, at)
            at += struct.calcsize(fmt)
            return value

        def skip(kind: int) -> None:
            nonlocal at
            if kind == _GGUF_STRING:
                size = read("Q")  # its length, then its bytes
                at += size
            elif kind == _GGUF_ARRAY:
                inner, n = read("I"), read("Q")
                if inner in _GGUF_SCALARS:
                    at += n * struct.calcsize(_GGUF_SCALARS[inner])
                else:
                    for _ in range(n):
                        skip(inner)
            else:
                at += struct.calcsize(_GGUF_SCALARS[kind])

        for _ in range(count):
            size = read("Q")
            key, at = bytes(data[at : at + size]).decode("utf-8", "replace"), at + size
            kind = read("I")
            if key in wanted and kind in _GGUF_SCALARS:
                found[key] = read(_GGUF_SCALARS[kind])
            else:
                skip(kind)
        return found


def check_choice(choice: str) -> str:
    """`choice` if it is one of CHOICES, else a one-line error (before any model loads)."""
    if choice not in CHOICES:
        raise LmlabError(
            f"sampling_defaults must be one of {', '.join(CHOICES)}, not {choice!r}",
            param="sampling_defaults",
        )
    return choice


def choose_defaults(lm: LanguageModel, choice: str = "model") -> SamplingDefaults:
    """The defaults `choice` (model, llama.cpp or openai) gives `lm`."""
    presets = {"llama.cpp": LLAMA_CPP, "openai": OPENAI}
    return lm.sampling_defaults if check_choice(choice) == "model" else presets[choice]
