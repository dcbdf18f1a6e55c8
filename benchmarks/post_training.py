"""Post-training the bundled chat model (SmolLM2-135M-Instruct): SFT on an instruction mixture,
DPO on its own samples judged by rules, and TRL side by side.

Data from ../shared/data only (benchmarks/post_training_data.py). Sections (`--only`):
  sft   LoRA SFT on the FLAN-style mixture (SST-2, en->es, WikiText-2 headings; several
        phrasings each). Scored: SST-2 dev accuracy answering in words (greedy; an answer
        naming neither label counts wrong), and the task kept out of training, STS-B
        similarity (0-5), as the Spearman x 100 of the number the model answers, against
        the untuned model on the same prompts.
  dpo   Preference pairs made from the bundled model's own samples (`make_prefs`, 4 samples,
        judged by the rules) on training prompts, then LoRA DPO (beta 0.1). Scored on held-out
        prompts (topics never seen in training; 10 per constraint kind): the fraction whose
        every constraint is met, sampled at temperature 0.2 and top-p 0.9 (the issue's
        setting), against the bundled model; and no damage elsewhere: WikiText-2 test
        perplexity and SST-2 zero-shot accuracy (lmlab's calibrated verbalizer scoring).
  peer  TRL's SFTTrainer and DPOTrainer on the same rows, model, LoRA and batch: the first
        batch's loss (within 1e-4: the same objective) and optimizer steps per second, ours at
        float32 and at lmlab's default dtype (auto: bfloat16 autocast where the CPU has it),
        TRL at its default (bfloat16 where the CPU has it: compare like with like).
Every model is scored through the torch backend, so the untuned and tuned models run the same
weights' precision. Writes OUT/results.json and OUT/post_training.md.

Goals (issue 31): SFT SST-2 >= 0.85; DPO held-out success >= 25 points above the bundled
model, WikiText-2 perplexity within 5% and SST-2 zero-shot within 2 points of the base; >= 1.3x
TRL's steps per second.
Usage: python benchmarks/post_training.py [--only sft,dpo,peer] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import post_training_data as data

import lmlab
from lmlab.home import atomic_write_text
from lmlab.models import DEFAULT_LM
from lmlab.posttrain.prefs import check
from lmlab.training.results import TrainConfig

LABELS = ("negative", "positive")


def ask(lm, prompt: str, **options) -> str:
    """The model's answer to one user message."""
    return lmlab.chat(lm, [{"role": "user", "content": prompt}], **options).text.strip()


def sst2_accuracy(lm, rows: list[tuple[str, str]]) -> dict:
    """Accuracy of greedy answers to the first SST-2 phrasing: the first label word named
    counts (16 tokens: the untuned model answers in a sentence)."""
    right = unparsed = 0
    for text, label in rows:
        answer = ask(lm, data.SST2_PHRASINGS[0].format(text=text), max_tokens=16, temperature=0)
        found = re.search(r"\b(negative|positive)\b", answer.lower())
        unparsed += found is None
        right += found is not None and found.group(1) == label
    return {"accuracy": right / len(rows), "unparsed": unparsed, "n": len(rows)}


def sts_spearman(lm, rows: list[tuple[str, str, float]]) -> dict:
    """Spearman x 100 between the number the model answers (greedy; 2.5 when it gives none)
    and the gold similarity."""
    from scipy.stats import spearmanr

    guesses, unparsed = [], 0
    for a, b, _ in rows:
        answer = ask(lm, data.STS_PROMPT.format(a=a, b=b), max_tokens=16, temperature=0)
        found = re.search(r"\d+(?:\.\d+)?", answer)
        unparsed += found is None
        guesses.append(min(5.0, float(found.group())) if found else 2.5)
    rho = spearmanr(guesses, [s for _, _, s in rows]).statistic
    return {"spearman": 100 * (0.0 if math.isnan(rho) else rho), "unparsed": unparsed}


def instruction_success(lm, rows: list[dict], seed: int = 0) -> dict:
    """The fraction of prompts whose every constraint the answer meets, overall and by kind."""
    by_kind: dict[str, list[bool]] = {}
    for n, row in enumerate(rows):
        rules = {k: v for k, v in row.items() if k != "prompt"}
        answer = ask(lm, row["prompt"], max_tokens=128, temperature=0.2, top_p=0.9, seed=seed + n)
        by_kind.setdefault(next(iter(rules)), []).append(all(check(answer, rules).values()))
    met = [ok for oks in by_kind.values() for ok in oks]
    return {
        "success": sum(met) / len(met),
        "met": sum(met),
        "n": len(met),
        "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in by_kind.items()},
    }


def wiki_perplexity(lm, chars: int) -> float:
    """Perplexity of the start of WikiText-2 test (`chars` characters)."""
    text = (data.DATA / "wikitext-2" / "test.txt").read_text(encoding="utf-8")[:chars]
    return float(lmlab.perplexity(lm, text, window=512, stride=256))


def sst2_zero_shot(model, rows: list[tuple[str, str]]) -> float:
    """SST-2 accuracy of lmlab's zero-shot classifier (calibrated verbalizer scores)."""
    from lmlab.classify.prompting import ZeroShot

    zs = ZeroShot(model=str(model), backend="torch", verbalizers={"0": "negative", "1": "positive"})
    proba = zs.fit([], np.array([]), ["0", "1"]).predict_proba([t for t, _ in rows])
    return float(np.mean(proba.argmax(1) == np.array([LABELS.index(y) for _, y in rows])))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def run_sft(args, out: Path, results: dict) -> None:
    train = write_jsonl(out / "data" / "sft.jsonl", data.mixture(args.per_task, seed=0))
    config = TrainConfig(
        epochs=args.sft_epochs, batch_size=8, lr=2e-4, warmup=20, eval_every=100, seed=0
    )
    shutil.rmtree(out / "sft", ignore_errors=True)  # a section runs afresh
    result = lmlab.train_sft(train, out / "sft", base=DEFAULT_LM, config=config, progress=True)
    dev = data.sst2("dev")[: args.sst2_limit]
    sts = data.sts("test")[: args.sts_limit]
    row = {"steps": result.steps, "train_minutes": result.seconds / 60}
    for name, spec in (("base", DEFAULT_LM), ("sft", out / "sft")):
        lm = lmlab.load_lm(spec, backend="torch")
        row[name] = {"sst2": sst2_accuracy(lm, dev), "sts_held_out": sts_spearman(lm, sts)}
        print(name, json.dumps(row[name]), flush=True)
    results["sft"] = row


def run_dpo(args, out: Path, results: dict) -> None:
    prompts = write_jsonl(
        out / "data" / "if_train.jsonl",
        data.instruction_prompts(args.prompts, held_out=False, seed=1),
    )
    held = data.instruction_prompts(args.held_out, held_out=True, seed=2)
    start = time.perf_counter()
    made = lmlab.make_prefs(
        prompts, out / "data" / "prefs.jsonl", model=DEFAULT_LM, samples=4, judge="rules", seed=0
    )
    prefs_minutes = (time.perf_counter() - start) / 60
    print(
        f"prefs: {made.pairs} pairs from {made.prompts} prompts ({made.ties} ties), "
        f"{prefs_minutes:.1f} min",
        flush=True,
    )
    config = TrainConfig(
        epochs=args.dpo_epochs, batch_size=4, lr=5e-5, warmup=10, eval_every=50, seed=0
    )
    shutil.rmtree(out / "dpo", ignore_errors=True)
    result = lmlab.train_dpo(made.out, out / "dpo", base=DEFAULT_LM, beta=0.1, config=config)
    dev = data.sst2("dev")[: args.sst2_limit]
    row = {
        "pairs": made.pairs,
        "ties": made.ties,
        "prefs_minutes": prefs_minutes,
        "steps": result.steps,
        "train_minutes": result.seconds / 60,
    }
    for name, spec in (("base", DEFAULT_LM), ("dpo", out / "dpo")):
        lm = lmlab.load_lm(spec, backend="torch")
        row[name] = {
            "held_out": instruction_success(lm, held),
            "wikitext2_perplexity": wiki_perplexity(lm, args.wiki_chars),
            "sst2_zero_shot": sst2_zero_shot(spec, dev),
        }
        print(name, json.dumps(row[name]), flush=True)
    results["dpo"] = row


def run_peer(args, out: Path, results: dict) -> None:
    """TRL against lmlab on the same 8 rows (one batch: both take the same first batch)."""
    from peer_trl import trl_dpo, trl_sft

    rows = data.mixture(4, seed=3)[:8]
    made = out / "data" / "prefs.jsonl"  # the dpo section's pairs, if it ran
    pairs = [json.loads(line) for line in made.read_text().splitlines()] if made.exists() else []
    if len(pairs) < 8:
        pairs = [
            {
                "prompt": r["messages"][0]["content"],
                "chosen": r["messages"][1]["content"],
                "rejected": "I do not know.",
            }
            for r in rows
        ]
    pairs = [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs[:8]]
    lora = {"r": 8, "alpha": 16, "dropout": 0.0}  # no dropout: the same first loss
    steps = args.peer_steps
    sft_file = write_jsonl(out / "data" / "peer_sft.jsonl", rows)
    dpo_file = write_jsonl(out / "data" / "peer_dpo.jsonl", pairs)
    table = {}
    for kind, file, theirs in (("sft", sft_file, trl_sft), ("dpo", dpo_file, trl_dpo)):
        entry = {"trl": theirs(rows if kind == "sft" else pairs, steps, out / f"trl-{kind}")}
        for dtype in ("float32", "auto"):
            config = TrainConfig(
                steps=steps,
                batch_size=8,
                lr=1e-4,
                warmup=0,
                seed=0,
                weight_decay=0.0,
                log_every=1,
                eval_every=10**6,
                dtype=dtype,
                device="cpu",
            )
            train = lmlab.train_sft if kind == "sft" else lmlab.train_dpo
            folder = out / f"ours-{kind}-{dtype}"
            shutil.rmtree(folder, ignore_errors=True)
            result = train(
                file,
                folder,
                base=DEFAULT_LM,
                lora=lora,
                config=config,
                valid_fraction=None,
                progress=False,
            )
            entry[f"ours_{dtype}"] = {
                "first_loss": result.history[0]["loss"],
                "steps_per_s": result.steps / result.seconds,
            }
        same = "ours_auto" if entry["trl"]["dtype"] != "float32" else "ours_float32"
        entry["loss_difference"] = abs(entry[same]["first_loss"] - entry["trl"]["first_loss"])
        for dtype in ("float32", "auto"):
            entry[f"ratio_{dtype}"] = (
                entry[f"ours_{dtype}"]["steps_per_s"] / entry["trl"]["steps_per_s"]
            )
        print(kind, json.dumps(entry), flush=True)
        table[kind] = entry
    results["peer"] = table


def markdown(results: dict) -> str:
    """The results as the docs' tables."""
    lines = []
    if sft := results.get("sft"):
        lines += [
            "| SFT (LoRA) | SST-2 dev accuracy (words) | STS-B held-out task, Spearman |",
            "|---|---|---|",
        ]
        for name in ("base", "sft"):
            r = sft[name]
            lines.append(
                f"| {name} | {r['sst2']['accuracy']:.3f} | {r['sts_held_out']['spearman']:.1f} |"
            )
        lines.append("")
    if dpo := results.get("dpo"):
        lines += [
            "| DPO (LoRA) | held-out instructions met | WikiText-2 ppl | SST-2 zero-shot |",
            "|---|---|---|---|",
        ]
        for name in ("base", "dpo"):
            r = dpo[name]
            lines.append(
                f"| {name} | {r['held_out']['met']}/{r['held_out']['n']} "
                f"({', '.join(f'{k} {v}' for k, v in r['held_out']['by_kind'].items())}) "
                f"| {r['wikitext2_perplexity']:.2f} | {r['sst2_zero_shot']:.3f} |"
            )
        lines.append("")
    if peer := results.get("peer"):
        lines += [
            "| against TRL (its dtype) | first loss, lmlab float32 / auto / TRL | steps/s TRL | "
            "lmlab float32 | lmlab auto dtype |",
            "|---|---|---|---|---|",
        ]
        for kind, e in peer.items():
            lines.append(
                f"| {kind} ({e['trl'].get('dtype', '?')}) | "
                f"{e['ours_float32']['first_loss']:.5f} / {e['ours_auto']['first_loss']:.5f} / "
                f"{e['trl']['first_loss']:.5f} | {e['trl']['steps_per_s']:.3f} | "
                f"{e['ratio_float32']:.2f}x | {e['ratio_auto']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sft,dpo,peer", help="sections to run")
    parser.add_argument("--out", type=Path, default=Path("post-training-runs"))
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--per-task", type=int, default=2000, help="SFT rows per task")
    parser.add_argument("--sft-epochs", type=float, default=1.0)
    parser.add_argument("--prompts", type=int, default=300, help="DPO training prompts")
    parser.add_argument("--held-out", type=int, default=50, help="held-out instructions")
    parser.add_argument("--dpo-epochs", type=float, default=2.0)
    parser.add_argument("--sst2-limit", type=int, default=872, help="SST-2 dev sentences scored")
    parser.add_argument("--sts-limit", type=int, default=300, help="STS-B test pairs scored")
    parser.add_argument("--wiki-chars", type=int, default=50_000)
    parser.add_argument("--peer-steps", type=int, default=8)
    args = parser.parse_args()
    if args.quick:
        args.per_task, args.prompts, args.sst2_limit, args.sts_limit = 16, 12, 20, 20
        args.wiki_chars, args.peer_steps, args.held_out = 4000, 2, 5
    sections = set(args.only.split(","))
    results_file = args.out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    for name, run in (("sft", run_sft), ("dpo", run_dpo), ("peer", run_peer)):
        if name in sections:
            run(args, args.out, results)
            atomic_write_text(
                results_file, json.dumps(results, indent=1)
            )  # kept section by section
    text = markdown(results)
    atomic_write_text(args.out / "post_training.md", text)
    print(text)


if __name__ == "__main__":
    main()
