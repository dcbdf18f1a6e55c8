"""A GGUF file re-quantized once by llama.cpp, for the llama backend, kept in the cache.

llama.cpp on an x86 CPU multiplies some weight types far faster than others: Q8_0 (like Q4_0,
F16 and BF16) has matrix kernels that read many tokens at once, Q4_1 does not. For the bundled
SmolLM2 Q4_1 file, its Q8_0 copy on 2 cores decodes one sequence ~10% faster, eight sequences
together 1.3-1.5x faster, and reads a long text 1.8x faster, at the same perplexity (WikiText-2,
30k tokens: 17.46 -> 17.48). Re-quantizing 135M parameters takes under a second; the copy lives
at `$LMLAB_HOME/gguf/<name>-<sha256 prefix>.<TYPE>.gguf`, written atomically.
"""

from __future__ import annotations

from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.home import atomic_file
from lmlab.lm.gguf_cache import cache_folder


def requantized(gguf_path: Path, type_name: str) -> Path:
    """The cached copy of `gguf_path` with its weights as `type_name` (e.g. "Q8_0")."""
    target = copy_path(gguf_path, type_name)
    if target.is_file():
        return target
    from lmlab.lm.llama_cpp_lm import _llama

    lib = _llama()
    ftype = getattr(lib, f"LLAMA_FTYPE_MOSTLY_{type_name}", None)
    if ftype is None:
        raise LmlabError(f"llama.cpp has no weight type {type_name!r}")
    params = lib.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    with atomic_file(target) as tmp:
        if lib.llama_model_quantize(str(gguf_path).encode(), str(tmp).encode(), params) != 0:
            raise LmlabError(f"llama.cpp could not re-quantize {gguf_path} to {type_name}")
    return target


def copy_path(gguf_path: Path, type_name: str) -> Path:
    """Where the `type_name` copy of `gguf_path` is (or would be) kept."""
    folder = cache_folder(gguf_path)  # the same content key as the torch backend's conversion
    return folder.with_name(f"{folder.name}.{type_name}.gguf")


def measure_copies(files: dict[str, Path], prefer: str, steps: int = 16, rows: int = 8) -> dict:
    """Which file llama.cpp decodes faster on this CPU: one sequence alone ("single") and
    `rows` sequences together ("batch"). `files`: label -> GGUF file (e.g. the file as shipped
    and its Q8_0 copy); `prefer`: the label kept unless another is 5% faster. Tokens per
    second are the best of two rounds, the files alternating; takes about two seconds for the
    bundled 135M model on 2 cores."""
    import time

    import torch

    from lmlab.lm.llama_cpp_lm import LlamaCppLM
    from lmlab.measured import fastest

    lms = {
        k: LlamaCppLM(path, context_length=512, max_batch_size=rows) for k, path in files.items()
    }
    best = {(k, use): float("inf") for k in lms for use in ("single", "batch")}
    for _ in range(2):
        for k, lm in lms.items():
            prompt = lm.tokenizer.encode("The history of the city begins with")
            for use, n in (("single", 1), ("batch", rows)):
                state = lm.new_state(n)
                lm.forward(state, torch.tensor([prompt] * n))
                start = time.perf_counter()
                for _ in range(steps if n == 1 else steps // 2):
                    lm.forward(state, torch.tensor([prompt[-1:]] * n))
                seconds = time.perf_counter() - start
                lm.release(state, keep=False)
                tokens = n * (steps if n == 1 else steps // 2)
                best[k, use] = min(best[k, use], seconds / tokens)
    speeds = {use: {k: round(1 / best[k, use], 1) for k in lms} for use in ("single", "batch")}
    return {use: fastest(s, prefer) for use, s in speeds.items()} | {"tokens_per_s": speeds}
