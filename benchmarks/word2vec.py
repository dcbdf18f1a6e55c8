"""Word2vec: lmlab's trainer beside gensim's, on the same corpus, settings and cores.

The corpus is PTB train + WikiText-2 valid and test, lower-cased (1.34M words); both train
skip-gram with negative sampling (dim 100, window 5, 5 noise words, min-count 5, subsampling
1e-3, 5 epochs, learning rate 0.025 -> 0.0001; gensim: `Word2Vec(sg=1, vector_size=100,
window=5, min_count=5, negative=5, epochs=5, workers=2)`), on the same number of threads, and
both are scored by lmlab's evaluations (gensim's conventions): WordSim-353 and SimLex-999
Spearman x100, analogy accuracy (questions-words.txt). Speed is corpus words x epochs per second
of the whole training call (reading and counting the corpus included: gensim is handed the
sentences already split, lmlab reads the file), as gensim counts words; CPU seconds are the
process's, all threads (less sensitive than wall time to other jobs on the machine).

lmlab's kernel is compiled by numba on its first call and cached on disk: the first run on a
machine pays a few seconds of compiling (`--warm-up` compiles it before the clock starts).

Usage: python benchmarks/word2vec.py [--epochs 5] [--workers 2] [--warm-up] [--no-gensim]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from lmlab.wordvec.evaluate import evaluate_analogies, evaluate_word_sim
from lmlab.wordvec.train import train_word2vec
from lmlab.wordvec.vectors import WordVectors

DATA = Path(__file__).parents[1] / ".." / "shared" / "data"
EVAL = DATA / "word-vectors-eval"
FILES = [DATA / "ptb" / "ptb.train.txt", DATA / "wikitext-2" / "valid.txt",
         DATA / "wikitext-2" / "test.txt"]  # fmt: skip
FIGURES = ("wordsim353", "simlex999", "analogy")


def scores(vectors: WordVectors) -> dict:
    return {
        "wordsim353": evaluate_word_sim(vectors, EVAL / "wordsim353.tsv")["spearman"],
        "simlex999": evaluate_word_sim(vectors, EVAL / "simlex999.txt")["spearman"],
        "analogy": evaluate_analogies(vectors, EVAL / "questions-words.txt")["accuracy"],
    }


def run_gensim(corpus: Path, epochs: int, workers: int) -> tuple[float, float, dict]:
    from gensim.models import Word2Vec

    sentences = [line.split() for line in corpus.read_text().splitlines() if line.split()]
    start, cpu = time.perf_counter(), time.process_time()
    model = Word2Vec(sentences, sg=1, vector_size=100, window=5, min_count=5, negative=5,
                     epochs=epochs, workers=workers, seed=1)  # fmt: skip
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    vectors = WordVectors(list(model.wv.index_to_key), model.wv.vectors, name="gensim")
    return seconds, cpu, scores(vectors)


def run_lmlab(corpus: Path, out: Path, epochs: int, workers: int) -> tuple[float, float, dict]:
    start, cpu = time.perf_counter(), time.process_time()
    train_word2vec(corpus, out, dim=100, window=5, negative=5, min_count=5, epochs=epochs,
                   workers=workers, progress=False)  # fmt: skip
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, scores(WordVectors.load(out))


def cpu_name() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if "Model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="threads, for both")
    parser.add_argument("--warm-up", action="store_true", help="compile lmlab's kernel first")
    parser.add_argument("--no-gensim", action="store_true")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("".join(f.read_text().lower() for f in FILES))
        words = len(corpus.read_text().split())
        if args.warm_up:
            tiny = Path(tmp) / "tiny.txt"
            tiny.write_text("a b c d e f\n" * 100)
            train_word2vec(tiny, Path(tmp) / "warm", min_count=1, epochs=1, progress=False)
        rows = {}
        if not args.no_gensim:
            rows["gensim"] = run_gensim(corpus, args.epochs, args.workers)
            load.append(os.getloadavg()[0])
        rows["lmlab"] = run_lmlab(corpus, Path(tmp) / "run", args.epochs, args.workers)
        load.append(os.getloadavg()[0])
    print(f"corpus: {words:,} words x {args.epochs} epochs, skip-gram, {args.workers} threads "
          f"each; CPU: {cpu_name()}, {os.cpu_count()} cores; load average (1 min) before, "
          f"between, after: {', '.join(f'{x:.1f}' for x in load)}")  # fmt: skip
    print("| trainer | seconds | CPU seconds | words/s | WordSim-353 | SimLex-999 | analogy % |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rate = {}
    for name, (seconds, cpu, s) in rows.items():
        rate[name] = words * args.epochs / seconds
        print(f"| {name} | {seconds:.1f} | {cpu:.1f} | {rate[name]:,.0f} | "
              f"{s['wordsim353']:.1f} | {s['simlex999']:.1f} | {s['analogy']:.1f} |")  # fmt: skip
    if len(rows) == 2:
        (_, cpu_theirs, theirs), (_, cpu_ours, ours) = rows["gensim"], rows["lmlab"]
        gaps = ", ".join(f"{k} {ours[k] - theirs[k]:+.1f}" for k in FIGURES)
        print(f"lmlab / gensim words/s: {rate['lmlab'] / rate['gensim']:.2f}x "
              f"(per CPU second: {cpu_theirs / cpu_ours:.2f}x); lmlab - gensim: {gaps} "
              "(points)")  # fmt: skip


if __name__ == "__main__":
    main()
