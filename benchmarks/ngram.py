"""N-gram models on Penn Treebank: training time and test perplexity, and NLTK side by side.

One run prints:
  1. for each smoothing (mle, add-k, kn, mkn) and order 1-5: training time (read + count +
     smooth) and PTB test perplexity (SRILM convention), next to the published KN5 figure
     (141.2, Mikolov et al. 2011, SRILM on this data);
  2. `lmlab train ngram ptb.train.txt --order 5 --out DIR` as a user runs it (start-up included);
  3. scoring speed (tokens/s) on the training text;
  4. NLTK's `nltk.lm` on a subset (NLTK is too slow for all of PTB): the same MLE bigram
     (where the definitions coincide: perplexities must agree) and interpolated Kneser–Ney
     trigrams (NLTK's definition differs: fixed discount 0.1, undiscounted continuation
     unigrams, n-1 `<s>` pads), with the speed ratio for training + scoring. Both skip test
     words outside the training vocabulary (NLTK gives them probability 0).

Usage: python benchmarks/ngram.py [--nltk-train-sentences 2000] [--nltk-test-sentences 50]
                                  [--nltk-mle-sentences 10000]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lmlab.lm.ngram.model import NgramLM

PTB = Path(__file__).parents[1] / ".." / "shared" / "data" / "ptb"
PUBLISHED_KN5 = 141.2  # Mikolov et al. (2011), Table 1: KN5, SRILM, no count cut-offs


def lmlab_grid() -> None:
    print("PTB test perplexity (words + </s> scored, SRILM convention) and training seconds")
    print(f"{'smoothing':>9} " + " ".join(f"{f'{n}-gram':>16}" for n in range(1, 6)))
    for smoothing in ("mle", "add-k", "kn", "mkn"):
        cells = []
        for order in range(1, 6):
            start = time.perf_counter()
            lm = NgramLM.train(PTB / "ptb.train.txt", order=order, smoothing=smoothing, k=0.01)
            seconds = time.perf_counter() - start
            ppl = lm.evaluate_file(PTB / "ptb.test.txt").perplexity
            cells.append(f"{ppl:9.1f} ({seconds:4.1f}s)")
            if smoothing == "mkn" and order == 5:
                mkn5 = ppl
        print(f"{smoothing:>9} " + " ".join(f"{c:>16}" for c in cells))
    print("(add-k with k = 0.01; mle is infinite as soon as one test n-gram was never seen)")
    gap = 100 * (mkn5 / PUBLISHED_KN5 - 1)
    print(f"mkn 5-gram: {mkn5:.2f} vs published {PUBLISHED_KN5} ({gap:+.2f}%)\n")


def cli_train_time() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "lmlab", "train", "ngram", str(PTB / "ptb.train.txt"),
             "--order", "5", "--out", f"{tmp}/m", "--json"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        print(
            f"`lmlab train ngram ptb.train.txt --order 5 --out DIR`: {seconds:.1f} s (goal <= 10)"
        )
        kenlm_check(Path(tmp) / "m" / "model.arpa")


def kenlm_check(arpa: Path) -> None:
    """Our ARPA file read by KenLM (when `pip install kenlm` was done): the same perplexity."""
    try:
        import kenlm
    except ImportError:
        print("(kenlm not installed: skipping the KenLM cross-check)")
        return
    model = kenlm.Model(str(arpa))
    lines = [line.strip() for line in (PTB / "ptb.test.txt").open() if line.split()]
    total = sum(model.score(line, bos=True, eos=True) for line in lines)
    tokens = sum(len(line.split()) + 1 for line in lines)
    ours = NgramLM.from_arpa(arpa).evaluate_file(PTB / "ptb.test.txt").perplexity
    print(f"the same model.arpa in KenLM: perplexity {10 ** (-total / tokens):.4f}, "
          f"lmlab {ours:.4f}")  # fmt: skip


def scoring_speed() -> None:
    lm = NgramLM.train(PTB / "ptb.train.txt", order=5)
    lm.evaluate_file(PTB / "ptb.valid.txt")  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    ev = lm.evaluate_file(PTB / "ptb.train.txt")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"scoring (5-gram, read + score): {ev.tokens:,} tokens in {seconds:.2f} s = "
          f"{ev.tokens / seconds / 1e6:.2f}M tokens/s wall-clock, "
          f"{ev.tokens / cpu / 1e6:.2f}M tokens/s of CPU time (goal >= 1M)\n")  # fmt: skip


def ptb_sentences(split: str) -> list[list[str]]:
    """The non-empty lines of a PTB split, as lists of words."""
    return [line.split() for line in (PTB / f"ptb.{split}.txt").open() if line.split()]


def write_sentences(path: Path, sentences: list[list[str]]) -> Path:
    """One sentence a line, words separated by spaces (the files lmlab trains on)."""
    path.write_text("\n".join(map(" ".join, sentences)) + "\n")
    return path


def nltk_side_by_side(train_sentences: int, test_sentences: int, mle_sentences: int) -> None:
    from nltk.lm import MLE
    from nltk.lm.preprocessing import padded_everygram_pipeline
    from nltk.util import ngrams, pad_sequence

    every, test = ptb_sentences("train"), ptb_sentences("test")
    train, test, mle_train = every[:train_sentences], test[:test_sentences], every[:mle_sentences]
    with tempfile.TemporaryDirectory() as tmp:
        train_path = write_sentences(Path(tmp) / "train.txt", train)
        test_path = write_sentences(Path(tmp) / "test.txt", test)
        mle_path = write_sentences(Path(tmp) / "mle.txt", mle_train)
        print("NLTK side by side (subsets of PTB: NLTK is too slow for all of it)")

        # 1. MLE bigram, scored on its own training text (no zero probabilities): identical
        start = time.perf_counter()
        ours = NgramLM.train(mle_path, order=2, smoothing="mle")
        ours_ppl = ours.evaluate_file(mle_path).perplexity
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        data, vocab = padded_everygram_pipeline(2, mle_train)
        mle = MLE(2)
        mle.fit(data, vocab)
        their_ppl = _nltk_perplexity(mle, mle_train, 2, ngrams, pad_sequence)
        their_s = time.perf_counter() - start
        words = sum(map(len, mle_train))
        print(f"  MLE bigram, trained and scored on the first {len(mle_train)} training sentences "
              f"({words:,} words):")  # fmt: skip
        print(f"    perplexity lmlab {ours_ppl:.4f}, NLTK {their_ppl:.4f} "
              f"(diff {abs(ours_ppl - their_ppl) / their_ppl:.1e}); time lmlab {ours_s:.2f} s, "
              f"NLTK {their_s:.2f} s = {their_s / ours_s:.0f}x")  # fmt: skip

        # 2. interpolated Kneser-Ney trigram, scored on test sentences
        kn = kn_against_nltk(train_path, test_path, train, test, 3)
        print(
            f"  KN trigram, trained on the first {len(train)} training sentences "
            f"({sum(map(len, train)):,} words), scored on the first {len(test)} test sentences:"
        )
        print(
            f"    perplexity lmlab kn {kn['lmlab_ppl']:.1f}, NLTK {kn['nltk_ppl']:.1f} "
            f"(different definitions, see above); time lmlab {kn['lmlab_s']:.2f} s, NLTK "
            f"{kn['nltk_s']:.1f} s (fit {kn['nltk_fit_s']:.1f} s) = "
            f"{kn['nltk_s'] / kn['lmlab_s']:.0f}x"
        )


def kn_against_nltk(train_path: Path, test_path: Path, train: list, test: list, order: int) -> dict:
    """Interpolated Kneser-Ney of `order` trained and scored by lmlab (`kn`) and by NLTK on the
    same sentences (files and token lists): perplexities and seconds of each."""
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline
    from nltk.util import ngrams, pad_sequence

    start = time.perf_counter()
    ours = NgramLM.train(train_path, order=order, smoothing="kn")
    ours_ppl = ours.evaluate_file(test_path).perplexity
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    data, vocab = padded_everygram_pipeline(order, train)
    kn = KneserNeyInterpolated(order)
    kn.fit(data, vocab)
    fit_s = time.perf_counter() - start
    their_ppl = _nltk_perplexity(kn, test, order, ngrams, pad_sequence)
    return {"lmlab_ppl": ours_ppl, "lmlab_s": ours_s, "nltk_ppl": their_ppl,
            "nltk_s": time.perf_counter() - start, "nltk_fit_s": fit_s}  # fmt: skip


def _nltk_perplexity(model, sentences, n, ngrams, pad_sequence) -> float:
    """exp of the mean negative log-probability of every padded n-gram (words and </s>)."""
    total, count = 0.0, 0
    for s in sentences:
        padded = list(pad_sequence(s, n, pad_left=True, pad_right=True,
                                   left_pad_symbol="<s>", right_pad_symbol="</s>"))  # fmt: skip
        for gram in ngrams(padded, n):
            if gram[-1] == "</s>" and gram[-2] == "</s>":
                continue  # right padding beyond the first </s> is not a token
            if gram[-1] not in model.vocab:
                continue  # out of vocabulary: left out, as lmlab (and SRILM) do
            p = model.score(gram[-1], gram[:-1])
            total += math.log(p) if p > 0 else -math.inf
            count += 1
    return math.exp(-total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nltk-train-sentences", type=int, default=2000)
    parser.add_argument("--nltk-test-sentences", type=int, default=50)
    parser.add_argument("--nltk-mle-sentences", type=int, default=10000)
    args = parser.parse_args()
    if not PTB.is_dir():
        sys.exit(f"needs the Penn Treebank files in {PTB}")
    lmlab_grid()
    cli_train_time()
    scoring_speed()
    nltk_side_by_side(args.nltk_train_sentences, args.nltk_test_sentences, args.nltk_mle_sentences)


if __name__ == "__main__":
    main()
