"""A tuned run against its `lmlab export` GGUF files (f16, q8_0), side by side in one run.

The run: RUN if given, else the bundled model with LoRA adapters that change it (a `lmlab train
lora` run written here). For the torch run and each exported file (the llama backend):
  - perplexity on the first CHARS characters of WikiText-2's test split (../shared/data), and
    its ratio to the torch run's (the contract: f16 within 1%);
  - greedy decode speed on one prompt (tokens/s, median of repeats, end-of-text ignored),
    measured alternating between the models, and the ratio to the torch run;
  - whether the greedy tokens agree with the torch run's, and for how many.
Usage: python benchmarks/export_gguf.py [RUN] [--chars 12000] [--tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lmlab
from lmlab.lm.gguf_export import export_gguf
from lmlab.models import DEFAULT_LM

WIKITEXT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wikitext-2"
PROMPT = "The history of the city of Paris begins"


def lora_run(folder: Path) -> Path:
    """The bundled model with seeded LoRA adapters, as a `lmlab train lora` run."""
    from safetensors.torch import save_file

    from lmlab.lm.lora_lm import _base_folder, add_adapters
    from lmlab.lm.transformers_lm import TransformersLM

    lora = {"r": 8, "alpha": 16, "dropout": 0.05}
    lm = TransformersLM(_base_folder(DEFAULT_LM), dtype="float32")
    add_adapters(lm.model, lora["r"], lora["alpha"], lora["dropout"])
    torch.manual_seed(0)
    state = {n: torch.randn_like(p) * (0.02 if "lora_B" in n else 0.1)
             for n, p in lm.model.named_parameters() if "lora_" in n}  # fmt: skip
    folder.mkdir(parents=True)
    save_file(state, str(folder / "adapter.safetensors"))
    run = {"kind": "lora-lm", "base": DEFAULT_LM, "lora": lora}
    (folder / "lmlab.json").write_text(json.dumps(run))
    return folder


def decode(lm, tokens: int) -> tuple[float, list[int]]:
    start = time.perf_counter()
    out = lmlab.generate(lm, PROMPT, temperature=0, max_tokens=tokens, ignore_eos=True)
    return len(out.token_ids) / (time.perf_counter() - start), out.token_ids


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--chars", type=int, default=12000)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lmlab-export-bench-"))
    run = Path(args.run) if args.run else lora_run(work / "run")
    text = (WIKITEXT / "test.txt").read_text()[: args.chars]
    models = {"torch run": lmlab.load_lm(run, dtype="float32")}
    for kind in ("f16", "q8_0"):
        start = time.perf_counter()
        result = export_gguf(run, work / f"run.{kind}.gguf", type=kind)
        print(f"export {kind}: {time.perf_counter() - start:.1f} s, {result.bytes / 1e6:.0f} MB")
        models[f"gguf {kind}"] = lmlab.load_lm(result.path)
    n_tokens = len(models["torch run"].tokenizer.encode(text))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()}")
    print(f"perplexity on {n_tokens} tokens of WikiText-2 test; decode {args.tokens} tokens")
    ppl = {name: lmlab.perplexity(lm, text) for name, lm in models.items()}
    rates: dict[str, list[float]] = {name: [] for name in models}
    ids: dict[str, list[int]] = {}
    for lm in models.values():
        decode(lm, 4)  # warm-up
    for _ in range(args.repeats):  # alternating, so a busy moment hits every model alike
        for name, lm in models.items():
            rate, ids[name] = decode(lm, args.tokens)
            rates[name].append(rate)
    ref = "torch run"
    for name in models:
        same = next((i for i, (a, b) in enumerate(zip(ids[name], ids[ref], strict=True))
                     if a != b), len(ids[ref]))  # fmt: skip
        speed = statistics.median(rates[name])
        print(f"{name:10s} perplexity {ppl[name]:8.3f} ({ppl[name] / ppl[ref] - 1:+.3%})  "
              f"decode {speed:6.1f} tok/s ({speed / statistics.median(rates[ref]):.2f}x)  "
              f"greedy tokens equal to the torch run's: {same}/{len(ids[ref])}")  # fmt: skip
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
