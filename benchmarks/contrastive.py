"""Contrastive encoders on STS-B test (Spearman x100), one function per part.

Text part:
  (a) the bundled all-MiniLM-L6-v2 as it is;
  (b) MiniLM tuned on STS-B train by `lmlab train contrastive` with its defaults (CoSENT, batch
      16, lr 2e-5, 100 warm-up steps, one epoch), beside the sentence-transformers recipe users
      run (SentenceTransformer.fit with CosineSimilarityLoss, batch 16, scores / 5, 100 warm-up
      steps), with both training times (wall clock and CPU) and their ratio;
  (c) the bundled fill-mask BERT and a small `lmlab train bert` run (its recipe, fewer steps),
      mean-pooled, before and after unsupervised SimCSE on WikiText-2 + PTB sentences.
Each part returns rows of a markdown table (and JSON facts); --parts picks them. The machine is
shared: report the load (`uptime`) beside the figures.

Usage: python benchmarks/contrastive.py [--parts minilm,tuned,peer,simcse] [--out DIR]
       [--bert-steps 2000] [--simcse-lr 1e-4] [--steps N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
STSB = DATA / "stsb"
sys.path.insert(0, str(REPO / "scripts"))
from train_fill_mask_model import CORPUS, MODEL, clean  # noqa: E402  (the bundled BERT's data)

from lmlab.contrastive.sts import evaluate_sts  # noqa: E402

BUNDLED_BERT = REPO / "src" / "lmlab" / "resources" / "bert-small"


def timed(fn):
    """fn()'s value, its wall-clock seconds and its CPU seconds (all threads of the process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def sts(encoder) -> float:
    return evaluate_sts(encoder, STSB / "sts-test.csv")["spearman"]


def part_minilm(args) -> list[dict]:
    """(a) the bundled MiniLM, untuned."""
    return [{"model": "all-MiniLM-L6-v2 (bundled)", "spearman": sts("all-minilm-l6-v2")}]


def part_tuned(args) -> list[dict]:
    """(b) MiniLM tuned on STS-B train by `lmlab train contrastive`'s defaults."""
    from lmlab.contrastive.train import default_config, train_contrastive

    out = args.out / "minilm-stsb"
    config = default_config("contrastive", **({"steps": args.steps} if args.steps else {}))
    result, wall, cpu = timed(
        lambda: train_contrastive(STSB / "sts-train.csv", out, config=config, progress=False)
    )
    return [{"model": "MiniLM + lmlab train contrastive (CoSENT, 1 epoch)",
             "spearman": sts(out), "train_s": wall, "train_cpu_s": cpu,
             "steps": result.steps}]  # fmt: skip


def part_peer(args) -> list[dict]:
    """(b) beside: sentence-transformers' recipe on the same data (its fit, CosineSimilarity)."""
    from lmlab.contrastive.data import read_pairs
    from lmlab.models import BUNDLED, bundled_path

    try:
        from sentence_transformers import InputExample, SentenceTransformer, losses
        from torch.utils.data import DataLoader
    except ImportError:
        return [{"model": "sentence-transformers (not installed)", "spearman": float("nan")}]
    pairs = read_pairs(STSB / "sts-train.csv")
    rows = zip(pairs.text1, pairs.text2, pairs.scores, strict=True)
    examples = [InputExample(texts=[a, b], label=s / 5.0) for a, b, s in rows]
    if args.steps:
        examples = examples[: args.steps * 16]
    model = SentenceTransformer(str(bundled_path(BUNDLED["all-minilm-l6-v2"])), device="cpu")
    loader = DataLoader(examples, shuffle=True, batch_size=16)
    loss = losses.CosineSimilarityLoss(model)
    _, wall, cpu = timed(
        lambda: model.fit(
            train_objectives=[(loader, loss)], epochs=1, warmup_steps=100, show_progress_bar=False
        )
    )
    out = args.out / "minilm-stsb-sentence-transformers"
    model.save(str(out))
    return [{"model": "MiniLM + sentence-transformers fit (CosineSimilarityLoss, 1 epoch)",
             "spearman": sts(out), "train_s": wall, "train_cpu_s": cpu,
             "steps": len(loader)}]  # fmt: skip


def simcse_sentences(folder: Path) -> Path:
    """WikiText-2 (valid, test) and PTB sentences, the bundled BERT's text cleaned as it was:
    PTB lines as they are, WikiText paragraphs cut at ' . ', headings left out; 5+ words."""
    sentences = []
    for name in CORPUS:
        for line in clean((DATA / name).read_text(encoding="utf-8")).splitlines():
            line = line.strip()
            if not line or line.startswith("="):
                continue
            parts = re.split(r"(?<= \.) ", line) if name.startswith("wikitext") else [line]
            sentences += [p.strip() for p in parts if len(p.split()) >= 5]
    path = folder / "simcse-sentences.txt"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return path


def part_simcse(args) -> list[dict]:
    """(c) BERTs of ours, mean-pooled, before and after unsupervised SimCSE."""
    from lmlab.contrastive.train import default_config, train_simcse
    from lmlab.training import TrainConfig, train

    sentences = simcse_sentences(args.out)
    bert_run = args.out / "bert-small-run"
    steps = 20 if args.quick else args.bert_steps
    if not (bert_run / "model.safetensors").exists():
        corpus = []
        for name in CORPUS:
            path = args.out / name.replace("/", "-")
            path.write_text(clean((DATA / name).read_text(encoding="utf-8")), encoding="utf-8")
            corpus.append(path)
        config = TrainConfig(steps=steps, batch_size=64, lr=1e-3, warmup=min(500, steps // 4),
                             eval_every=500, seed=0)  # fmt: skip
        train("bert", corpus, bert_run, tokenizer="wordpiece", vocab_size=6000,
              valid_fraction=0.05, model_options=MODEL, config=config,
              progress=False)  # fmt: skip
    rows = []
    for label, base in (("bundled fill-mask BERT (8000 steps)", BUNDLED_BERT),
                        (f"lmlab train bert ({steps} steps)", bert_run)):  # fmt: skip
        before = sts(base)
        out = args.out / f"simcse-{base.name}"
        given = {"lr": args.simcse_lr, **({"steps": 20} if args.quick else {})}
        result, wall, cpu = timed(
            lambda base=base, out=out, given=given: train_simcse(
                sentences,
                out,
                encoder=base,
                config=default_config("simcse", **given),
                progress=False,
            )
        )
        after = sts(out)
        rows.append({"model": f"{label}, mean-pooled", "spearman": before})
        rows.append({"model": f"{label} + SimCSE", "spearman": after, "lift": after - before,
                     "train_s": wall, "train_cpu_s": cpu, "steps": result.steps})  # fmt: skip
    return rows


PARTS = {"minilm": part_minilm, "tuned": part_tuned, "peer": part_peer, "simcse": part_simcse}


def table(rows: list[dict]) -> str:
    lines = ["| model | STS-B test Spearman | training (wall / CPU s) | note |",
             "|---|---:|---:|---|"]  # fmt: skip
    for r in rows:
        trained = f"{r['train_s']:.0f} / {r['train_cpu_s']:.0f}" if "train_s" in r else ""
        note = f"lift {r['lift']:+.2f}" if "lift" in r else ""
        note += f" {r['steps']} steps" if "steps" in r else ""
        lines.append(f"| {r['model']} | {r['spearman']:.2f} | {trained} | {note.strip()} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-contrastive"))
    parser.add_argument("--bert-steps", type=int, default=2000)
    parser.add_argument("--simcse-lr", type=float, default=None)
    parser.add_argument("--steps", type=int, help="train (b) for this many steps only (speed)")
    parser.add_argument("--quick", action="store_true", help="20 steps each: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.steps = args.steps or 20
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.parts.split(","):
        part = PARTS[name](args)
        for row in part:
            print(json.dumps(row), flush=True)
        rows += part
    tuned = next((r for r in rows if "lmlab train contrastive" in r["model"]), None)
    peer = next((r for r in rows if "sentence-transformers fit" in r["model"]), None)
    print(table(rows))
    if tuned and peer:
        print(f"\ntraining speed, lmlab / sentence-transformers: "
              f"{peer['train_s'] / tuned['train_s']:.2f}x wall clock, "
              f"{peer['train_cpu_s'] / tuned['train_cpu_s']:.2f}x CPU")  # fmt: skip
    print(f"load average: {os.getloadavg()}, CPUs: {os.cpu_count()}")


if __name__ == "__main__":
    main()
