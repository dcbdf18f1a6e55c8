"""ARPA files: write -> read keeps every probability; the structure SRILM and KenLM expect."""

import gzip
import random
import re

import numpy as np
import pytest

from lmlab.errors import LmlabError
from lmlab.lm.ngram.arpa import read_arpa, write_arpa
from lmlab.lm.ngram.model import NgramLM


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(1)
    words = [f"w{i}" for i in range(25)]
    weights = [1 / (i + 1) for i in range(25)]
    path = tmp_path_factory.mktemp("arpa") / "c.txt"
    path.write_text(
        "\n".join(" ".join(rng.choices(words, weights, k=rng.randint(1, 9))) for _ in range(200))
    )
    return path


@pytest.mark.parametrize("smoothing", ["mle", "add-k", "kn", "mkn"])
@pytest.mark.parametrize("name", ["model.arpa", "model.arpa.gz"])
def test_write_then_read_gives_the_same_probabilities(corpus, tmp_path, smoothing, name):
    lm = NgramLM.train(corpus, order=3, smoothing=smoothing)
    write_arpa(lm.tables, tmp_path / name)
    back = NgramLM.from_arpa(tmp_path / name)
    assert back.tokenizer.vocab == lm.tokenizer.vocab
    assert back.tables.sizes == lm.tables.sizes
    rng = np.random.default_rng(0)
    for _ in range(30):
        history = [1, *rng.integers(3, lm.vocab_size, size=2).tolist()][: rng.integers(1, 4)]
        ours = lm.tables.next_log10(history[-2:])
        theirs = back.tables.next_log10(history[-2:])
        finite = np.isfinite(ours)
        assert (finite == np.isfinite(theirs)).all()
        assert theirs[finite] == pytest.approx(ours[finite], abs=1e-5)


def test_structure_is_what_srilm_and_kenlm_expect(corpus, tmp_path):
    lm = NgramLM.train(corpus, order=3, smoothing="mkn")
    write_arpa(lm.tables, tmp_path / "m.arpa")
    text = (tmp_path / "m.arpa").read_text()
    header, *sections = text.split("\n\n")
    assert header.splitlines()[0] == "\\data\\"
    declared = [int(m) for m in re.findall(r"^ngram (\d+)=\d+$", header, re.M)]
    assert declared == [1, 2, 3]
    counts = [int(c) for c in re.findall(r"^ngram \d+=(\d+)$", header, re.M)]
    assert text.rstrip().endswith("\\end\\")
    for n, section in enumerate(sections[:3], 1):
        title, *lines = section.splitlines()
        assert title == f"\\{n}-grams:"
        assert len(lines) == counts[n - 1]
        for line in lines:
            fields = line.split("\t")
            assert len(fields[1].split(" ")) == n
            float(fields[0])
            if n == 3:  # the highest order never has a backoff weight
                assert len(fields) == 2
            else:
                assert len(fields) in (2, 3)
    unigrams = [line.split("\t") for line in sections[0].splitlines()[1:]]
    assert {"<s>", "</s>", "<unk>"} <= {fields[1] for fields in unigrams}
    bos = next(line for line in sections[0].splitlines() if "\t<s>\t" in line)
    assert bos.startswith("-99\t")  # p(<s>) = 0, with a backoff weight (it is a context)
    # every n-gram's context and suffix are listed (both tools rely on it)
    listed = [{line.split("\t")[1] for line in s.splitlines()[1:]} for s in sections[:3]]
    for n in (2, 3):
        for gram in listed[n - 1]:
            words = gram.split()
            assert " ".join(words[:-1]) in listed[n - 2] and " ".join(words[1:]) in listed[n - 2]
    # the unigram probabilities sum to 1
    probs = [10 ** float(fields[0]) for fields in unigrams]
    assert sum(p for p in probs if p > 1e-90) == pytest.approx(1.0, abs=1e-4)


# A hand-written backoff bigram model in the layout of SRILM and KenLM (space-separated, with a
# comment before \data\), and the probabilities backoff gives it.
HAND = """Written by hand for a test.

\\data\\
ngram 1=5
ngram 2=3

\\1-grams:
-1.0 <unk>
-99 <s> -0.5
-0.5 </s>
-0.3 a -0.2
-0.7 b

\\2-grams:
-0.1 <s> a
-0.4 a b
-0.6 a </s>

\\end\\
"""


def test_reads_a_hand_written_model_and_backs_off(tmp_path):
    path = tmp_path / "hand.arpa.gz"
    with gzip.open(path, "wt") as f:
        f.write(HAND)
    lm = NgramLM.from_arpa(path)
    assert lm.tokenizer.vocab == ["<unk>", "<s>", "</s>", "a", "b"]
    assert lm.prob("a", ["<s>"]) == pytest.approx(10**-0.1)  # listed
    assert lm.prob("b", ["<s>"]) == pytest.approx(10 ** (-0.5 - 0.7))  # b(<s>) p(b)
    assert lm.prob("b", ["a"]) == pytest.approx(10**-0.4)
    assert lm.prob("a", ["a"]) == pytest.approx(10 ** (-0.2 - 0.3))
    assert lm.prob("a", ["b"]) == pytest.approx(10**-0.3)  # b has no backoff weight: 1
    assert lm.prob("<s>", []) == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello\n", "no \\\\data\\\\ header"),
        ("\\data\\\nngram 2=3\n\n", "unexpected header line"),
        (
            "\\data\\\nngram 1=2\n\n\\1-grams:\n-1 a\n\n\\end\\\n",
            "says 2 1-grams but the file lists 1",
        ),
        ("\\data\\\nngram 1=1\n\n\\2-grams:\n-1 a\n", "expected the section"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1 a b c\n", "does not have 1 words"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\nx a\n\n\\end\\\n", "could not convert"),
        (
            "\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1 a\n\n\\2-grams:\n-1 a z\n\n\\end\\\n",
            "'z' is not among the unigrams",
        ),
    ],
)
def test_broken_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(LmlabError, match=message):
        read_arpa(path)


def test_missing_and_non_gzip_files(tmp_path):
    with pytest.raises(LmlabError, match="cannot read ARPA file"):
        read_arpa(tmp_path / "none.arpa")
    fake = tmp_path / "fake.arpa.gz"
    fake.write_text("not gzip")
    with pytest.raises(LmlabError, match="cannot read ARPA file"):
        read_arpa(fake)


@pytest.mark.parametrize("smoothing", ["add-k", "kn", "mkn"])
def test_kenlm_reads_our_files_and_gives_the_same_scores(corpus, tmp_path, smoothing):
    kenlm = pytest.importorskip("kenlm")  # optional: pip install kenlm (compiles C++)
    lm = NgramLM.train(corpus, order=3, smoothing=smoothing)
    write_arpa(lm.tables, tmp_path / "m.arpa")
    theirs = kenlm.Model(str(tmp_path / "m.arpa"))
    sentences = ["w0 w1 w2", "w3", "w24 w24 w24 w0 w1", "w7 w2 w9 w11 w0 w0 w0"]
    for sentence in sentences:
        ids = [1, *lm.tokenizer.encode(sentence), 2]
        ours = sum(lm.tables.next_log10(ids[max(0, i - 2) : i])[ids[i]] for i in range(1, len(ids)))
        assert theirs.score(sentence, bos=True, eos=True) == pytest.approx(ours, abs=1e-4)
