"""Sentence-embedding speed and accuracy: lmlab's default and fast paths against
sentence-transformers, side by side in one run.

Same bundled model (all-MiniLM-L6-v2), same texts, same batch size, one process:
  - two sets of texts from ../shared/data, 3,000 each by default: mixed lengths, shuffled (STS-B
    and SST-2 sentences, WikiText-2 paragraphs, many longer than the 256-token window), and
    short (distinct STS-B test/dev sentences);
  - the contenders: sentence-transformers as it loads (float32), sentence-transformers after
    `model.to(torch.bfloat16)` (what its user can do alone; timed in full only where it is
    faster than float32 on a first sample), lmlab's default (`load_encoder()`: float32, ONNX
    Runtime or torch as measured) and lmlab's fast path (`load_encoder(fast=True)`);
  - each set is cut into chunks and every contender encodes each chunk in turn, so load on the
    machine falls on all of them alike; texts/s (wall clock), CPU seconds per 1,000 texts, and
    the ratio to sentence-transformers;
  - the least cosine of each contender's vectors to sentence-transformers' float32 ones (and the
    largest |cos - 1| of lmlab's default);
  - STS-B test Spearman x 100 of lmlab's default and fast paths (sentence-transformers reports
    82.03 for this model);
  - the CPU model, the choices lmlab measured, and the load average before and after.
Usage: python benchmarks/embed.py [--n 3000] [--batch-size 32] [--chunks 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

import numpy as np

import lmlab
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
BF16 = "sentence-transformers bfloat16"


def stsb(split: str) -> list[tuple[str, str, float]]:
    """(sentence1, sentence2, gold score) of an STS-B split (tab-separated, raw quotes)."""
    rows = []
    for line in (DATA / "stsb" / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines():
        f = line.split("\t")
        rows.append((f[5], f[6], float(f[4])))
    return rows


def mixed_texts(n: int, seed: int = 0) -> list[str]:
    """60% STS-B sentences, 30% SST-2 sentences, 10% WikiText-2 paragraphs, shuffled."""
    rng = random.Random(seed)
    short = [s for split in ("train", "dev") for a, b, _ in stsb(split) for s in (a, b)]
    sst_lines = (DATA / "sst2" / "train_full.tsv").read_text(encoding="utf-8").splitlines()[1:]
    medium = [line.split("\t")[0].strip() for line in sst_lines]
    wiki = (DATA / "wikitext-2" / "test.txt").read_text(encoding="utf-8").splitlines()
    long = [p.strip() for p in wiki if len(p.strip()) > 200 and not p.strip().startswith("=")]
    texts = (
        rng.sample(short, int(0.6 * n))
        + rng.sample(medium, int(0.3 * n))
        + rng.sample(long, n - int(0.6 * n) - int(0.3 * n))
    )
    rng.shuffle(texts)
    return texts


def stsb_sentences(n: int = 2000, seed: int = 0) -> list[str]:
    """n distinct STS-B test and dev sentences (the int8 path's accuracy check)."""
    distinct = sorted({s for split in ("test", "dev") for a, b, _ in stsb(split) for s in (a, b)})
    return random.Random(seed).sample(distinct, n)


def timed(run):
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def spearman_stsb(encode) -> float:
    from scipy.stats import spearmanr

    rows = stsb("test")
    a = encode([r[0] for r in rows])
    b = encode([r[1] for r in rows])
    return 100 * spearmanr((a * b).sum(1), [r[2] for r in rows]).statistic


def cpu_line() -> str:
    from lmlab.embed.fast import has_bfloat16_products
    from lmlab.measured import cpu_model_and_flags

    model, flags = cpu_model_and_flags()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    kinds = ", ".join(f for f in wanted if f in flags) or "none of AVX2/AVX-512/AMX"
    bf16 = "native bfloat16" if has_bfloat16_products() else "no bfloat16 products"
    return f"CPU: {model} ({os.cpu_count()} cores; {kinds}; {bf16})"


def load_line() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def race(contenders: dict, texts: list[str], chunks: int) -> dict[str, tuple]:
    """Each contender encodes every chunk of `texts` in turn: name -> (vectors, wall s, CPU s)."""
    size = -(-len(texts) // chunks)
    parts = [texts[i : i + size] for i in range(0, len(texts), size)]
    out = {name: ([], 0.0, 0.0) for name in contenders}
    for part in parts:
        for name, encode in contenders.items():
            vectors, wall, cpu = out[name]
            v, w, c = timed(lambda encode=encode, part=part: encode(part))
            out[name] = ([*vectors, v], wall + w, cpu + c)
    return {name: (np.concatenate(v), w, c) for name, (v, w, c) in out.items()}


def table(results: dict[str, tuple], peer: str) -> list[dict]:
    """Per contender: texts/s, CPU s per 1k texts, both against `peer`, least cosine to it."""
    n = len(next(iter(results.values()))[0])
    reference, wall_p, cpu_p = results[peer]
    return [
        {
            "name": name,
            "texts_per_s": n / wall,
            "cpu_per_1k": 1000 * cpu / n,
            "ratio": wall_p / wall,
            "cpu_ratio": cpu_p / cpu,
            "least_cos": float((v * reference).sum(1).min()),
        }
        for name, (v, wall, cpu) in results.items()
    ]


def largest_gap(results: dict[str, tuple], peer: str) -> float:
    """lmlab default's largest |cos - 1| to the peer's vectors."""
    return float(np.abs((results["lmlab default"][0] * results[peer][0]).sum(1) - 1).max())


def report(title: str, results: dict[str, tuple], peer: str) -> None:
    n = len(next(iter(results.values()))[0])
    print(f"\n{title}: {n} texts")
    print(f"{'':<34}{'texts/s':>9}{'CPU s/1k':>10}{'vs ST':>8}{'vs ST CPU':>11}{'least cos':>11}")
    for r in table(results, peer):
        print(
            f"{r['name']:<34}{r['texts_per_s']:>9.1f}{r['cpu_per_1k']:>10.2f}{r['ratio']:>7.2f}x"
            f"{r['cpu_ratio']:>10.2f}x{r['least_cos']:>11.5f}"
        )
    print(f"lmlab default: largest |cos - 1| to sentence-transformers float32 "
          f"{largest_gap(results, peer):.1e}")  # fmt: skip


def contenders(batch_size: int) -> tuple[dict, object, object]:
    """sentence-transformers (float32; bfloat16 after `.to`) and lmlab's default and fast
    paths, loaded: (name -> encode function, lmlab's default encoder, its fast one)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from lmlab.embed.fast import describe

    bs = batch_size
    folder = str(bundled_path(BUNDLED[DEFAULT_ENCODER]))
    st = SentenceTransformer(folder, device="cpu")
    st_bf16 = SentenceTransformer(folder, device="cpu").to(torch.bfloat16)
    default = lmlab.load_encoder(DEFAULT_ENCODER)
    fast = lmlab.load_encoder(DEFAULT_ENCODER, fast=True)
    print(f"lmlab default runs on {describe(default)}, lmlab fast on {describe(fast)}")
    encoders = {
        "sentence-transformers": lambda t: st.encode(t, batch_size=bs, convert_to_numpy=True),
        BF16: lambda t: st_bf16.encode(t, batch_size=bs, convert_to_numpy=True).astype(np.float32),
        "lmlab default": lambda t: default.encode(t, batch_size=bs),
        f"lmlab fast ({describe(fast)})": lambda t: fast.encode(t, batch_size=bs),
    }
    return encoders, default, fast


def drop_slow_bfloat16(encoders: dict, texts: list[str]) -> None:
    """Warm every contender up; leave sentence-transformers in bfloat16 out (saying so) where
    it is slower than in float32 on a sample of `texts`: not worth timing in full."""
    for encode in encoders.values():  # warm-up
        encode(texts[:64])
    sample = race(encoders, texts[:256], 1)
    if sample[BF16][1] > sample["sentence-transformers"][1]:
        print(
            f"{BF16}: {256 / sample[BF16][1]:.1f} texts/s on 256 mixed texts against "
            f"{256 / sample['sentence-transformers'][1]:.1f} in float32: slower on this CPU, "
            "so not run in full"
        )
        del encoders[BF16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3_000, help="texts per set")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=3, help="turns each contender takes")
    args = parser.parse_args()
    import torch

    print(cpu_line())
    print(f"torch threads {torch.get_num_threads()}; {load_line()} (before)")
    bs = args.batch_size
    encoders, default, fast = contenders(bs)
    mixed, short = mixed_texts(args.n), stsb_sentences(args.n)
    drop_slow_bfloat16(encoders, mixed)
    for title, texts in (("mixed lengths", mixed), ("short sentences (STS-B)", short)):
        report(title, race(encoders, texts, args.chunks), "sentence-transformers")
    print(f"\n{load_line()} (after)")
    d = spearman_stsb(lambda t: default.encode(t, batch_size=bs))
    f = spearman_stsb(lambda t: fast.encode(t, batch_size=bs))
    print(
        f"STS-B test Spearman x 100: lmlab default {d:.2f}, lmlab fast {f:.2f} (published: 82.03)"
    )
    from lmlab.measured import choices

    print("measured on this machine:", json.dumps(choices(), indent=1))


if __name__ == "__main__":
    main()
