"""What Ray costs on one machine, and what a cluster would take: `lmlab embed` plain vs `--ray`.

Side by side in one run, on the same cores (this machine: an Intel Xeon Sapphire Rapids VM
with 2 cores), the bundled encoder (all-MiniLM-L6-v2) and the same file of texts:
  - plain: `embed_file` on one process (its encoder uses every core's thread);
  - ray: `lmlab.ray.embed` on a local Ray runtime with one actor per core (each a 1-thread
    encoder), written as a Parquet folder. The runtime is started before the clock (a cluster
    is up before a job is sent to it); its start-up is printed apart.
Printed: texts/s of each, the ratio (goal: Ray costs <= 15%), the largest difference between
their vectors, and an estimate for a real cluster from the measured per-core throughput of
200-word documents (documents per CPU-second: a busy machine disturbs it less than the wall
clock): hours for 50 million of them on 8 nodes x 16 cores.

The estimate's bound: the encoder. Each 200-word document is ~260 tokens, at the model's
256-token window; a core encodes a few of them per second, i.e. kilobytes per second of text,
while reading (Parquet/CSV, ~100 MB/s per core) and writing the vectors (1.5 KB per document)
run three orders of magnitude faster; so the hours scale with the number of cores, and more
cores (or GPUs) is the only lever.
Usage: python benchmarks/ray_embed.py [--n 20000] [--long 64]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import lmlab.ray
from lmlab.embed.batch import embed_file, read_embeddings
from lmlab.embed.load import load_encoder

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DOCS, NODES, CORES = 50_000_000, 8, 16  # the cluster of the estimate


def sentences(n: int, seed: int = 0) -> list[str]:
    """n SST-2 training sentences (phrases to long sentences), shuffled."""
    lines = (DATA / "sst2" / "train_full.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0].strip() for line in lines if line.strip()]
    random.Random(seed).shuffle(texts)
    return (texts * (n // len(texts) + 1))[:n]


def documents(n: int, words: int = 200, seed: int = 0) -> list[str]:
    """n documents of `words` words each, cut from WikiText-2's running text."""
    tokens = (DATA / "wikitext-2" / "valid.txt").read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    starts = [rng.randrange(len(tokens) - words) for _ in range(n)]
    return [" ".join(tokens[s : s + words]) for s in starts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="texts embedded by each path")
    parser.add_argument("--long", type=int, default=64, help="200-word documents timed")
    parser.add_argument("--cpus", type=int, default=2, help="cores for both paths")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ray-embed-bench-"))
    try:
        data = work / "texts.txt"
        data.write_text("".join(t + "\n" for t in sentences(args.n)), encoding="utf-8")
        load_encoder()  # the ONNX export, if any, made before either clock

        start = time.perf_counter()
        embed_file(data, work / "plain.parquet", progress=False)
        plain_s = time.perf_counter() - start

        start = time.perf_counter()
        with lmlab.ray.ray_session(num_cpus=args.cpus) as ray:
            up_s = time.perf_counter() - start
            ray.data.DataContext.get_current().enable_progress_bars = False
            start = time.perf_counter()
            rows = lmlab.ray.write_parquet(lmlab.ray.embed(str(data)), work / "ray")
            ray_s = time.perf_counter() - start
        assert rows == args.n, rows

        _, _, plain = read_embeddings(work / "plain.parquet")
        table = lmlab.ray.read_parquet_folder(work / "ray")
        theirs = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
        print(f"{args.n:,} texts on {args.cpus} cores (SST-2 sentences)")
        print(f"  plain: {args.n / plain_s:8.1f} texts/s ({plain_s:.1f} s)")
        print(f"  ray:   {args.n / ray_s:8.1f} texts/s ({ray_s:.1f} s; runtime start {up_s:.1f} s)")
        print(f"  ray / plain throughput: {plain_s / ray_s:.3f} (goal >= 0.85)")
        print(f"  largest |difference| of vectors: {np.abs(theirs - plain).max():.2e}")

        docs = documents(args.long)
        encoder = load_encoder()
        encoder.encode(docs[:4])  # warm
        start, cpu = time.perf_counter(), time.process_time()
        encoder.encode(docs, batch_size=32)
        wall_rate = args.long / (time.perf_counter() - start) / args.cpus
        # CPU seconds per document (every thread of this process) measure the work itself,
        # which other programs on a shared machine disturb far less than the wall clock.
        per_core = args.long / (time.process_time() - cpu)
        hours = DOCS / (per_core * NODES * CORES) / 3600
        print(
            f"200-word documents: {per_core:.1f} per CPU-second ({wall_rate:.1f} per wall "
            f"second per core; plain, {args.long} docs)"
        )
        print(
            f"estimate: {DOCS:,} documents on {NODES} x {CORES} cores = {hours:.1f} hours "
            "(bound: the encoder; reading and writing are far faster)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
