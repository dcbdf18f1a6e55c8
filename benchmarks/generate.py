"""Single-stream decode speed: lmlab's `generate` (both backends) against the peers, one run.

Greedy, the same prompt, 128 new tokens (end-of-text ignored so every run makes all 128):
  - lmlab, llama backend        vs  llama-cpp-python's own `Llama.generate` loop (the same
                                    file lmlab runs, its Q8_0 copy; same threads)
  - lmlab, torch backend        vs  transformers' `generate` on the same weights: float32 (what
                                    transformers gives when it loads the GGUF file itself) and
                                    float16 (the dtype lmlab's cache keeps)
Prints tokens/s and the ratios. Usage: python benchmarks/generate.py [--tokens 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import lmlab
from lmlab.lm.gguf_cache import converted_folder
from lmlab.models import DEFAULT_LM, llama_file, resolve

PROMPT = "The history of the city of Paris begins"


def rate(run, tokens: int) -> float:
    """Tokens/s of one timed run (which must make all `tokens`)."""
    start = time.perf_counter()
    made = run()
    assert made == tokens, f"expected {tokens} tokens, got {made}"
    return made / (time.perf_counter() - start)


def best_rate(run, tokens: int, repeats: int) -> float:
    """Median tokens/s over `repeats` timed runs, after one warm-up."""
    run()
    return statistics.median(rate(run, tokens) for _ in range(repeats))


def ours(lm, tokens: int):
    def run() -> int:
        out = lmlab.generate(lm, PROMPT, temperature=0, max_tokens=tokens, ignore_eos=True)
        return len(out.token_ids)

    return run


def llama_cpp_python(path, tokens: int, threads: int):
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    prompt_ids = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)

    def run() -> int:
        llm.reset()
        made = 0
        for _ in llm.generate(prompt_ids, top_k=1, temp=0.0, reset=True):
            made += 1
            if made == tokens:
                break
        return made

    return run


def transformers_generate(folder, dtype: torch.dtype, tokens: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
    ids = AutoTokenizer.from_pretrained(folder)(PROMPT, return_tensors="pt").input_ids

    def run() -> int:
        with torch.inference_mode():
            out = model.generate(
                ids,
                do_sample=False,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                pad_token_id=model.config.eos_token_id,
            )
        return out.shape[1] - ids.shape[1]

    return run


def llama_rates(gguf, tokens: int, repeats: int, threads: int) -> dict[str, float]:
    """Median tokens/s of lmlab's llama backend and of llama-cpp-python's loop on `gguf`,
    their runs alternating (other work on the machine then slows both alike)."""
    runs = {
        "lmlab llama": ours(lmlab.load_lm(DEFAULT_LM, backend="llama"), tokens),
        "llama-cpp-python": llama_cpp_python(gguf, tokens, threads),
    }
    for run in runs.values():  # warm-up
        run()
    rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(rate(run, tokens))
    return {name: statistics.median(r) for name, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    ref = resolve(DEFAULT_LM)
    gguf = llama_file(ref)  # what lmlab's llama backend runs, given to llama-cpp-python too
    folder = converted_folder(ref.path)
    n, r = args.tokens, args.repeats
    print(f"model: {DEFAULT_LM}; greedy, {n} new tokens; {threads} threads; median of {r} runs")

    rates = llama_rates(gguf, n, r, threads)
    rates["lmlab torch (float16 cache)"] = best_rate(
        ours(lmlab.load_lm(DEFAULT_LM, backend="torch"), n), n, r
    )
    rates["transformers generate float32"] = best_rate(
        transformers_generate(folder, torch.float32, n), n, r
    )
    rates["transformers generate float16"] = best_rate(
        transformers_generate(folder, torch.float16, n), n, r
    )
    width = max(map(len, rates))
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:7.1f} tokens/s")
    print()
    ratios = [
        ("lmlab llama", "llama-cpp-python", 0.9),
        ("lmlab torch (float16 cache)", "transformers generate float32", 1.5),
        ("lmlab torch (float16 cache)", "transformers generate float16", 1.5),
    ]
    for a, b, goal in ratios:
        ratio = rates[a] / rates[b]
        verdict = "meets" if ratio >= goal else "BELOW"
        print(f"{a} / {b}: {ratio:.2f}x  ({verdict} the {goal}x goal)")


if __name__ == "__main__":
    main()
