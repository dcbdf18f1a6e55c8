"""Word2vec: lmlab's trainer beside gensim's, on the same corpus, settings and two cores.

The corpus is PTB train + WikiText-2 valid and test, lower-cased (1.34M words); both train
skip-gram with negative sampling (dim 100, window 5, 5 noise words, min-count 5, subsampling
1e-3, 5 epochs; gensim: `Word2Vec(sg=1, vector_size=100, window=5, min_count=5, negative=5,
epochs=5, workers=2)`), and both are scored by lmlab's evaluations (gensim's conventions):
WordSim-353 and SimLex-999 Spearman x100, analogy accuracy (questions-words.txt). Speed is
corpus words per second of the whole training call (vocabulary included), as gensim counts.

Usage: python benchmarks/word2vec.py [--epochs 5] [--batch-words 1000] [--no-gensim]
"""

from __future__ import annotations

import argparse
import os
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


def scores(vectors: WordVectors) -> dict:
    return {
        "wordsim353": evaluate_word_sim(vectors, EVAL / "wordsim353.tsv")["spearman"],
        "simlex999": evaluate_word_sim(vectors, EVAL / "simlex999.txt")["spearman"],
        "analogy": evaluate_analogies(vectors, EVAL / "questions-words.txt")["accuracy"],
    }


def run_gensim(corpus: Path, epochs: int) -> tuple[float, dict]:
    from gensim.models import Word2Vec

    sentences = [line.split() for line in corpus.read_text().splitlines() if line.split()]
    start = time.perf_counter()
    model = Word2Vec(sentences, sg=1, vector_size=100, window=5, min_count=5, negative=5,
                     epochs=epochs, workers=2, seed=1)  # fmt: skip
    seconds = time.perf_counter() - start
    vectors = WordVectors(list(model.wv.index_to_key), model.wv.vectors, name="gensim")
    return seconds, scores(vectors)


def run_lmlab(corpus: Path, out: Path, epochs: int, batch_words: int) -> tuple[float, dict]:
    start = time.perf_counter()
    train_word2vec(corpus, out, dim=100, window=5, negative=5, min_count=5, epochs=epochs,
                   batch_words=batch_words, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    return seconds, scores(WordVectors.load(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-words", type=int, default=1000)
    parser.add_argument("--no-gensim", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("".join(f.read_text().lower() for f in FILES))
        words = len(corpus.read_text().split())
        rows = {}
        if not args.no_gensim:
            rows["gensim 4 (sg, 2 workers)"] = run_gensim(corpus, args.epochs)
        rows["lmlab train word2vec"] = run_lmlab(
            corpus, Path(tmp) / "run", args.epochs, args.batch_words
        )
    print(f"corpus: {words:,} words x {args.epochs} epochs; load average before/after: "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| trainer | seconds | words/s | WordSim-353 | SimLex-999 | analogy % |")
    print("|---|---:|---:|---:|---:|---:|")
    rate = {}
    for name, (seconds, s) in rows.items():
        rate[name] = words * args.epochs / seconds
        print(f"| {name} | {seconds:.1f} | {rate[name]:,.0f} | {s['wordsim353']:.1f} | "
              f"{s['simlex999']:.1f} | {s['analogy']:.1f} |")  # fmt: skip
    if len(rate) == 2:
        gensim, ours = rate.values()
        print(f"speed ratio lmlab / gensim: {ours / gensim:.2f}x")


if __name__ == "__main__":
    main()
