"""Word-level Penn Treebank: one test-perplexity table for n-gram and neural models.

Trains mlp, lstm, gru and gpt on ptb.train.txt (validated on ptb.valid.txt, early stopping,
the best validation weights kept) and scores ptb.test.txt the standard way: Mikolov's 10k
vocabulary, one `<eos>` per line, all 82,430 test tokens predicted (the stream starts after an
`<eos>`). Recurrent models read the test text as one stream; the MLP and GPT read it through
`lmlab.evaluate.token_logprobs` with a window sliding by half a context. The n-gram rows
(1- to 5-gram, interpolated modified Kneser-Ney) are estimated here in seconds.

Every finished model's row is kept in OUT/results.json, so models can be trained in separate
runs (`--models lstm`, later `--models gpt`) and the table shows them all; `--retrain` trains a
listed model again. Writes OUT/ptb.md and OUT/ptb.png.

Published reference: Zaremba et al. (2014) "small" LSTM, 114.5 test perplexity; Mikolov et al.
(2011) KN5, 141.2. The issue's budget is 60 minutes of training per model (`--minutes`).

Usage: python benchmarks/ptb_perplexity.py [--models mlp,lstm,gru,gpt] [--minutes 60] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

import lmlab
from lmlab.evaluate import token_logprobs
from lmlab.home import atomic_write_text
from lmlab.training import TrainConfig, evaluate_loss, train

PTB = Path(__file__).parents[1] / ".." / "shared" / "data" / "ptb"
NEURAL = ("mlp", "lstm", "gru", "gpt")
# Shapes and optimisation per model; steps are set from the time budget (--minutes). Matrix
# products run in bfloat16 where the CPU has it (lmlab's default dtype, auto: 1.4-1.9x the
# float32 speed on this AVX512-BF16 CPU). The recurrent models use the PyTorch
# word_language_model example's recipe (SGD at lr 20, gradient norm clipped to 0.25, dropout
# 0.2, tied weights): AdamW at 3e-3 with dropout 0.3 reached only 162 validation perplexity
# after 6 of 12 epochs.
SETUPS = {
    "mlp": dict(model={"context": 5, "n_embd": 100, "n_hidden": 400, "direct": True,
                       "block": 64}, train={"batch_size": 64, "lr": 2e-3}),
    "lstm": dict(model={"context": 35, "n_layer": 2, "n_embd": 200, "dropout": 0.2},
                 train={"batch_size": 20, "lr": 20.0, "optimizer": "sgd", "grad_clip": 0.25}),
    "gru": dict(model={"context": 35, "n_layer": 2, "n_embd": 200, "dropout": 0.2},
                train={"batch_size": 20, "lr": 20.0, "optimizer": "sgd", "grad_clip": 0.25}),
    "gpt": dict(model={"context": 64, "n_layer": 4, "n_head": 4, "n_embd": 256,
                       "dropout": 0.3}, train={"batch_size": 32, "lr": 1e-3}),
}  # fmt: skip
ZAREMBA_SMALL = 114.5


def with_eos(source: Path, target: Path) -> Path:
    """The PTB convention: every line ends with an <eos> token, counted in perplexity."""
    lines = source.read_text().splitlines()
    target.write_text("".join(f"{line.strip()} <eos>\n" for line in lines))
    return target


def steps_for(kind: str, minutes: float, corpus: Path, out: Path) -> int:
    """Optimizer steps that fit the time budget, from the speed of a 30-step trial run.

    10% of the budget is left for start-up, validation and the final evaluation.
    """
    setup = SETUPS[kind]
    config = TrainConfig(steps=30, warmup=5, **setup["train"])
    shutil.rmtree(out, ignore_errors=True)
    result = train(kind, [corpus], out, tokenizer="word", model_options=setup["model"],
                   config=config, progress=False)  # fmt: skip
    shutil.rmtree(out)
    return max(50, int(0.9 * minutes * 60 / (result.seconds / config.steps)))


def test_perplexity(run: Path, test_text: str) -> tuple[float, int]:
    """exp(mean negative log-likelihood) of every token of the test text, and their count."""
    lm = lmlab.load_lm(run)
    ids = lm.tokenizer.encode("<eos> " + test_text)
    if lm.model.carries_state:
        loss = evaluate_loss(lm.model, torch.tensor(ids, dtype=torch.int32), 35)
        return math.exp(loss), len(ids) - 1
    window = lm.model.config.context + 1 if lm.kind == "gpt" else 256
    logprobs = token_logprobs(lm, ids, window=window, stride=max(1, window // 2))
    return math.exp(-sum(logprobs) / len(logprobs)), len(logprobs)


def train_neural(kind: str, minutes: float, out: Path, files: dict[str, Path]) -> dict:
    """Train one neural model within the budget; its row of the table."""
    setup = SETUPS[kind]
    steps = steps_for(kind, minutes, files["train"], out / f"{kind}-trial")
    shutil.rmtree(out / kind, ignore_errors=True)
    start = time.perf_counter()
    config = TrainConfig(steps=steps, eval_every=max(50, steps // 25), patience=5,
                         **setup["train"])  # fmt: skip
    result = train(kind, [files["train"]], out / kind, tokenizer="word", valid=files["valid"],
                   model_options=setup["model"], config=config)  # fmt: skip
    minutes = (time.perf_counter() - start) / 60
    ppl, tokens = test_perplexity(out / kind, files["test"].read_text())
    print(f"{kind}: test perplexity {ppl:.1f} over {tokens} tokens, {minutes:.1f} min")
    return {"model": kind, "perplexity": ppl, "tokens": tokens, "minutes": minutes,
            "valid_perplexity": result.valid_perplexity, "steps": result.steps,
            "stopped_early": result.stopped_early, "options": setup}  # fmt: skip


def ngram_rows() -> list[dict]:
    """1- to 5-gram models with interpolated modified Kneser-Ney (the n-gram issue's models)."""
    rows = []
    for order in range(1, 6):
        start = time.perf_counter()
        lm = lmlab.NgramLM.train(PTB / "ptb.train.txt", order=order, smoothing="mkn")
        result = lm.evaluate_file(PTB / "ptb.test.txt")
        minutes = (time.perf_counter() - start) / 60
        name = f"{order}-gram, modified Kneser-Ney"
        rows.append(
            {
                "model": name,
                "perplexity": result.perplexity,
                "tokens": result.tokens,
                "minutes": minutes,
            }
        )
    return rows


def write_table(rows: list[dict], out: Path) -> str:
    """The markdown table and the bar chart (PNG) of every row."""
    table = ["| model | test perplexity | tokens | training minutes |", "|---|---|---|---|"]
    table += [f"| {r['model']} | {r['perplexity']:.1f} | {r['tokens']} | {r['minutes']:.1f} |"
              for r in rows]  # fmt: skip
    table.append(f"| Zaremba et al. 2014, small LSTM (published) | {ZAREMBA_SMALL} | 82430 | |")
    text = "\n".join(table) + "\n"
    atomic_write_text(out / "ptb.md", text)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    names = [r["model"].replace(", modified Kneser-Ney", " (KN)") for r in rows]
    values = [r["perplexity"] for r in rows]
    bars = ax.barh(names[::-1], values[::-1])
    ax.bar_label(bars, fmt="%.1f", padding=3)
    ax.axvline(ZAREMBA_SMALL, color="gray", linestyle="--", label="Zaremba small LSTM (114.5)")
    ax.set_xlabel("PTB test perplexity (lower is better)")
    ax.set_xlim(0, max(values) * 1.12)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "ptb.png", dpi=100)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(NEURAL), help="neural models to train")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per model")
    parser.add_argument("--out", type=Path, default=Path("ptb-runs"))
    parser.add_argument("--retrain", action="store_true", help="train listed models again")
    args = parser.parse_args()
    if not PTB.is_dir():
        sys.exit(f"missing {PTB}")
    kinds = [k for k in args.models.split(",") if k]
    if unknown := set(kinds) - set(NEURAL):
        sys.exit(f"unknown models {sorted(unknown)}: choose from {', '.join(NEURAL)}")
    args.out.mkdir(parents=True, exist_ok=True)
    files = {split: with_eos(PTB / f"ptb.{split}.txt", args.out / f"{split}.txt")
             for split in ("train", "valid", "test")}  # fmt: skip
    saved = args.out / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for kind in kinds:
        if kind in results and not args.retrain:
            print(f"{kind}: kept from {saved} (--retrain to train again)")
            continue
        results[kind] = train_neural(kind, args.minutes, args.out, files)
        atomic_write_text(saved, json.dumps(results, indent=2) + "\n")
    rows = ngram_rows() + [results[k] for k in NEURAL if k in results]
    print(write_table(rows, args.out))


if __name__ == "__main__":
    main()
