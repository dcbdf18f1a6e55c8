"""Sentence-embedding speed and accuracy: lmlab's `encode` against sentence-transformers.

Same bundled model (all-MiniLM-L6-v2), same texts, same batch size, one process:
  - 10,000 texts of mixed lengths, shuffled: STS-B sentences (short), SST-2 sentences
    (phrases to long sentences) and WikiText-2 paragraphs (many longer than the 256-token
    window), from ../shared/data;
  - throughput (texts/s, wall clock, and CPU seconds per 1,000 texts, which a busy machine
    disturbs less) and their ratios;
  - the largest |cos(ours, theirs) - 1| over every text;
  - the optional int8 path (backend="int8"): throughput and the smallest cosine to theirs,
    and its smallest and mean cosine to our float32 vectors on 2,000 STS-B sentences;
  - STS-B test Spearman x 100 of the bundled encoder (sentence-transformers reports 82.03).
Usage: python benchmarks/embed.py [--n 10000] [--batch-size 32] [--backend auto]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

import lmlab
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backend", default="auto", choices=["auto", "onnx", "torch"])
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    texts = mixed_texts(args.n)
    ours = lmlab.load_encoder(DEFAULT_ENCODER, backend=args.backend)
    theirs = SentenceTransformer(str(bundled_path(BUNDLED[DEFAULT_ENCODER])), device="cpu")
    bs = args.batch_size

    def ours_encode(t):
        return ours.encode(t, batch_size=bs)

    def theirs_encode(t):
        return theirs.encode(t, batch_size=bs, convert_to_numpy=True)

    for f in (ours_encode, theirs_encode):  # warm-up
        f(texts[:64])
    mine, wall_o, cpu_o = timed(lambda: ours.encode_with_stats(texts, batch_size=bs))
    ref, wall_t, cpu_t = timed(lambda: theirs_encode(texts))
    n = len(texts)
    worst = float(np.abs((mine.vectors * ref).sum(1) - 1).max())
    print(f"{n} texts, batch size {bs}, {mine.n_truncated} truncated to 256 tokens")
    print(f"{'':<26}{'texts/s':>10}{'CPU s/1k texts':>16}")
    print(f"{'lmlab (' + ours.backend + ')':<26}{n / wall_o:>10.1f}{1000 * cpu_o / n:>16.2f}")
    print(f"{'sentence-transformers':<26}{n / wall_t:>10.1f}{1000 * cpu_t / n:>16.2f}")
    print(f"{'ratio':<26}{wall_t / wall_o:>9.2f}x{cpu_t / cpu_o:>15.2f}x")
    print(f"largest |cos(ours, theirs) - 1|: {worst:.2e}")
    if args.backend == "auto":
        int8 = lmlab.load_encoder(DEFAULT_ENCODER, backend="int8")
        int8.encode(texts[:64], batch_size=bs)
        v8, wall_8, cpu_8 = timed(lambda: int8.encode(texts, batch_size=bs))
        print(
            f"{'lmlab (int8)':<26}{n / wall_8:>10.1f}{1000 * cpu_8 / n:>16.2f}"
            f"   {wall_t / wall_8:.2f}x / {cpu_t / cpu_8:.2f}x sentence-transformers,"
            f" smallest cos {float((v8 * ref).sum(1).min()):.4f}"
        )
        short = stsb_sentences()
        cos = (int8.encode(short) * ours.encode(short)).sum(1)
        print(
            f"int8 vs float32 on {len(short)} STS-B sentences: cosine smallest {cos.min():.4f},"
            f" mean {cos.mean():.4f}"
        )
    print(f"STS-B test Spearman x 100: lmlab {spearman_stsb(ours_encode):.2f}", end="")
    print(f", sentence-transformers {spearman_stsb(theirs_encode):.2f} (published: 82.03)")


if __name__ == "__main__":
    main()
