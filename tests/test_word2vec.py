"""Word2vec trained here: its distributions, that it learns, its vectors as an encoder, the
analogy and word-similarity evaluations, and one-line errors for bad input."""

import json
import random

import numpy as np
import pytest
from safetensors.numpy import save_file

import lmlab
from lmlab.errors import LmlabError
from lmlab.wordvec.corpus import keep_probabilities, noise_table
from lmlab.wordvec.train import train_word2vec
from lmlab.wordvec.vectors import WordVectors

ANIMALS = ["cat", "dog", "mouse", "horse", "cow", "sheep"]
VEHICLES = ["car", "bus", "truck", "train", "bike", "plane"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from lmlab.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def topic_corpus(path, lines=600, seed=0):
    """Lines of words from one topic each: words of a topic co-occur, across topics never."""
    rng = random.Random(seed)
    text = "".join(
        " ".join(rng.choices(rng.choice([ANIMALS, VEHICLES]), k=8)) + "\n" for _ in range(lines)
    )
    path.write_text(text)
    return path


def mean_cosines(vectors: WordVectors) -> tuple[float, float]:
    """Mean cosine of pairs within a topic, and of pairs across the two topics."""
    unit = lambda w: vectors.unit[vectors.lookup(w)]  # noqa: E731
    within = [unit(a) @ unit(b) for g in (ANIMALS, VEHICLES) for a in g for b in g if a < b]
    across = [unit(a) @ unit(b) for a in ANIMALS for b in VEHICLES]
    return float(np.mean(within)), float(np.mean(across))


def test_subsampling_keeps_words_by_word2vecs_formula():
    counts = np.array([900, 90, 10])  # shares 0.9, 0.09, 0.01 of the corpus
    keep = keep_probabilities(counts, 0.01)
    # (sqrt(f / t) + 1) * t / f, capped at 1
    assert keep == pytest.approx([(np.sqrt(90) + 1) * 0.01 / 0.9, 4 * 0.01 / 0.09, 1.0])
    assert keep_probabilities(counts, 0) == pytest.approx([1, 1, 1])


def test_noise_words_are_drawn_in_proportion_to_count_to_the_three_quarters():
    table = noise_table(np.array([16, 1, 81]))  # 16**0.75 = 8, 1, 81**0.75 = 27
    shares = np.bincount(table, minlength=3) / len(table)
    assert shares == pytest.approx([8 / 36, 1 / 36, 27 / 36], abs=1e-5)


@pytest.mark.parametrize("cbow", [False, True], ids=["skip-gram", "cbow"])
def test_words_that_co_occur_end_up_closer_than_words_that_do_not(tmp_path, cbow):
    corpus = topic_corpus(tmp_path / "c.txt")
    result = train_word2vec(corpus, tmp_path / "run", cbow=cbow, dim=16, window=3,
                            min_count=1, epochs=3, sample=0, batch_words=200,
                            progress=False)  # fmt: skip
    assert result.steps == 3 * 24  # 4,800 words in blocks of 200, three times
    within, across = mean_cosines(lmlab.load_encoder(tmp_path / "run"))
    assert within > across + 0.3, (within, across)


def hand_made_run(folder):
    """A word2vec run directory holding vectors chosen so that king - man + woman = queen."""
    words = ["king", "queen", "man", "woman", "apple", "pear"]
    matrix = np.array(
        [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0.2, 1]],
        np.float32,
    )
    folder.mkdir()
    (folder / "lmlab.json").write_text(json.dumps({"kind": "word2vec"}))
    (folder / "vocab.txt").write_text("".join(f"{w}\t1\n" for w in words))
    save_file({"input": matrix, "output": np.zeros_like(matrix)}, str(folder / "model.safetensors"))
    return folder


def test_analogy_by_3cosadd_excludes_the_input_words(tmp_path, capsys):
    vectors = WordVectors.load(hand_made_run(tmp_path / "run"))
    assert vectors.analogy("man", "king", "woman")[0][0] == "queen"
    # woman - pear + apple is nearest woman itself, which is an input: the next word answers
    assert vectors.analogy("pear", "woman", "apple")[0][0] != "woman"
    code, out, _ = run_cli(capsys, "analogy", str(tmp_path / "run"), "king", "man", "woman",
                           "--json")  # fmt: skip
    assert code == 0 and json.loads(out)[0]["word"] == "queen"
    code, _, err = run_cli(capsys, "analogy", str(tmp_path / "run"), "king", "man", "zebra")
    assert code == 2 and err.strip().count("\n") == 0 and "zebra" in err


def test_eval_analogy_and_word_sim_as_json(tmp_path, capsys):
    run = hand_made_run(tmp_path / "run")
    questions = tmp_path / "q.txt"
    # right, wrong (the answer is queen, not apple), and one with a word outside the vocabulary
    questions.write_text(": family\nman king woman queen\nman king woman apple\n"
                         ": fruit\napple pear zebra king\n")  # fmt: skip
    code, out, _ = run_cli(capsys, "eval", str(run), str(questions), "--task", "analogy", "--json")
    result = json.loads(out)
    assert code == 0
    assert result["accuracy"] == pytest.approx(50.0)
    assert (result["questions"], result["skipped_oov"], result["total"]) == (2, 1, 3)
    pairs = tmp_path / "sim.tsv"
    # cosines: king-queen 0.5, man-king 0.707, apple-pear 0.98; the human scores agree in order
    pairs.write_text("# a comment\nking\tqueen\t2\nman\tking\t5\napple\tpear\t9\nzebra\tcat\t1\n")
    code, out, _ = run_cli(capsys, "eval", str(run), str(pairs), "--task", "word-sim", "--json")
    result = json.loads(out)
    assert code == 0
    assert result["spearman"] == pytest.approx(100.0)
    assert (result["pairs"], result["skipped_oov"]) == (3, 1)
    assert result["oov_ratio"] == pytest.approx(0.25)


def test_the_run_is_an_encoder_everywhere(tmp_path):
    run = hand_made_run(tmp_path / "run")
    encoder = lmlab.load_encoder(run)
    vectors = encoder.encode(["king man", "apple", "zebra"])
    assert vectors.shape == (3, 4)
    assert vectors[0] == pytest.approx(np.array([2, 1, 0, 0]) / np.sqrt(5))  # mean, normalized
    assert not vectors[2].any()  # no known word: the zero vector
    with pytest.raises(LmlabError, match="word vectors"):
        lmlab.load_lm(str(run))


def test_bad_input_gets_one_line_errors(tmp_path, capsys):
    few = tmp_path / "few.txt"
    few.write_text("a b c d e f\n")
    code, _, err = run_cli(capsys, "train", "word2vec", str(few), "--out", str(tmp_path / "r"))
    assert code == 2 and err.strip().count("\n") == 0 and "--min-count 5" in err
    run = hand_made_run(tmp_path / "run")
    bad = tmp_path / "bad.txt"
    bad.write_text("king queen\n")
    for task, needle in (("analogy", "4 words"), ("word-sim", "word1<TAB>word2<TAB>score")):
        code, _, err = run_cli(capsys, "eval", str(run), str(bad), "--task", task)
        assert code == 2 and err.strip().count("\n") == 0 and needle in err, err
    code, _, err = run_cli(capsys, "eval", str(run), str(bad), "--task", "sts-b")
    assert code == 2 and "unknown --task" in err
    with pytest.raises(LmlabError, match="at least 1"):
        train_word2vec(few, tmp_path / "r2", window=0)
