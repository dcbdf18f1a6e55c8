"""Which path computes a transformer encoder's vectors fastest on this CPU, measured once.

Two choices, kept per machine by lmlab.measured:
  default (`backend="auto"`): ONNX Runtime or torch, both float32 (their vectors agree to
      |cos - 1| < 1e-5), whichever encodes the check set faster;
  fast (`load_encoder(..., fast=True)`): the fastest of the default, int8 (ONNX Runtime with
      int8 weights and products, `backend="int8"`) and bfloat16 (torch, `dtype="bfloat16"`;
      tried only where the CPU multiplies bfloat16 natively: AMX, AVX512-BF16 or ARM's BF16),
      keeping only a path whose vectors stay within cosine CHECK_COSINE of the default's on
      every text of a fixed check set (resources/embedding-check/sentences.txt: 40 texts, from
      one word to long paragraphs). The default is always a candidate, so a CPU on which
      nothing is both faster and close enough gets the default.
Speeds are texts per second over the check set in batches of 32, best of three rounds, the
candidates alternating so that other work on the machine slows each about equally; another path
replaces the default (ONNX Runtime; the default path) only when 5% faster (measured.MARGIN).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lmlab.errors import LmlabError
from lmlab.measured import cpu_model_and_flags, fastest, measured

if TYPE_CHECKING:
    from lmlab.embed.transformer import TransformerEncoder

CHECK_COSINE = 0.999  # the fast path's least cosine to float32 on any check text
CHECK_FILE = Path(__file__).resolve().parents[1] / "resources" / "embedding-check" / "sentences.txt"
# The fast path's candidates: TransformerEncoder options ("default": none).
PATHS: dict[str, dict] = {
    "default": {},
    "int8": {"backend": "int8"},
    "bfloat16": {"backend": "torch", "dtype": "bfloat16"},
}
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, AVX512-BF16; ARM's BF16 extension
ROUNDS = 3


def check_texts() -> list[str]:
    """The fixed check set: one text per line."""
    return [line for line in CHECK_FILE.read_text(encoding="utf-8").splitlines() if line]


def choice_names(folder: Path) -> dict[str, str]:
    """The names lmlab.measured keeps the two choices for a model folder under."""
    from lmlab.embed.onnx_runtime import content_key

    key = content_key(folder)  # the weights' content: a renamed copy shares the measurement
    return {"encoder": f"encoder {key}", "fast encoder": f"fast encoder {key}"}


def default_backend(folder: Path) -> str:
    """The float32 runtime, "onnx" or "torch", that encodes faster on this CPU (measured once)."""
    name = choice_names(folder)["encoder"]
    return measured(name, lambda: _measure_default(folder), {"backend": "onnx"})["backend"]


def fast_choice(folder: Path) -> dict:
    """The fast path's measurement: {"path": a key of PATHS, "texts_per_s", "min_cosine",
    "dropped": {path: why}} (measured once per machine; LMLAB_MEASURE=0: the default)."""
    name = choice_names(folder)["fast encoder"]
    return measured(name, lambda: _measure_fast(folder), {"path": "default"})


def fast_options(folder: Path) -> dict:
    """The TransformerEncoder options of the fast path on this CPU."""
    return PATHS.get(fast_choice(folder)["path"], {})


def has_bfloat16_products() -> bool:
    """Whether the CPU multiplies bfloat16 matrices natively (else bfloat16 is emulated, slow)."""
    return bool(set(BF16_FLAGS) & set(cpu_model_and_flags()[1]))


def _measure_default(folder: Path) -> dict:
    from lmlab.embed.transformer import TransformerEncoder

    encoders = {}
    for backend in ("onnx", "torch"):
        with contextlib.suppress(LmlabError):  # a model that does not export: torch it is
            encoders[backend] = TransformerEncoder(folder, backend=backend)
    speeds, cosines = _race(encoders, reference="torch")
    choice = fastest(speeds, prefer="onnx")
    return {"backend": choice, "texts_per_s": speeds, "min_cosine": cosines}


def _measure_fast(folder: Path) -> dict:
    from lmlab.embed.transformer import TransformerEncoder

    encoders: dict[str, TransformerEncoder] = {}
    dropped: dict[str, str] = {}
    for path, options in PATHS.items():
        if options.get("dtype") == "bfloat16" and not has_bfloat16_products():
            dropped[path] = "not tried: the CPU has no bfloat16 products (AMX, AVX512-BF16)"
            continue
        try:
            encoders[path] = TransformerEncoder(folder, **options)
        except LmlabError as e:  # e.g. int8 without onnx-ir installed
            dropped[path] = f"not available: {e}"
    speeds, cosines = _race(encoders, reference="default")
    kept = {p: s for p, s in speeds.items() if p == "default" or cosines[p] >= CHECK_COSINE}
    for path in speeds.keys() - kept.keys():
        dropped[path] = f"cosine {cosines[path]:.5f} to float32 < {CHECK_COSINE}"
    return {
        "path": fastest(kept, prefer="default"),
        "texts_per_s": speeds,
        "min_cosine": cosines,
        "dropped": dropped,
    }


def _race(
    encoders: dict[str, TransformerEncoder], reference: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Texts per second of each encoder on the check set, and each one's least cosine to
    `reference`'s vectors (the first encoder's if `reference` is absent)."""
    texts = check_texts()
    vectors = {k: enc.encode(texts, batch_size=32) for k, enc in encoders.items()}  # warm-up
    best = dict.fromkeys(encoders, float("inf"))
    for _ in range(ROUNDS):
        for k, enc in encoders.items():
            best[k] = min(best[k], _seconds(enc, texts))
    base = vectors.get(reference, next(iter(vectors.values())))
    cosines = {k: round(float((v * base).sum(axis=1).min()), 6) for k, v in vectors.items()}
    speeds = {k: round(len(texts) / s, 1) for k, s in best.items()}
    return speeds, cosines


def _seconds(encoder: TransformerEncoder, texts: list[str]) -> float:
    start = time.perf_counter()
    encoder.encode(texts, batch_size=32)
    return time.perf_counter() - start


def describe(encoder) -> str:
    """How a loaded encoder computes, for start-up lines: e.g. "onnx", "int8", "torch bfloat16"."""
    backend = getattr(encoder, "backend", None) or type(encoder).__name__
    dtype = getattr(encoder, "dtype", "float32")
    return backend if dtype == "float32" else f"{backend} {dtype}"
