"""Word2vec trained here: its distributions, that it learns, its vectors as an encoder, the
analogy and word-similarity evaluations, and one-line errors for bad input."""

import json
import random

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import lmlab
from lmlab.errors import LmlabError
from lmlab.wordvec.corpus import keep_probabilities, noise_probabilities
from lmlab.wordvec.kernel import alias_tables, draw_noise, sigmoid_tables, train_chunk
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


def alias_shares(threshold, alias):
    """The chance of each word under alias tables, worked out exactly."""
    n, kept = len(threshold), threshold / 2**31
    return (kept + np.bincount(alias, weights=1 - kept, minlength=n)) / n


def test_noise_words_are_drawn_in_proportion_to_count_to_the_three_quarters():
    p = noise_probabilities(np.array([16, 1, 81]))  # 16**0.75 = 8, 1, 81**0.75 = 27
    assert p == pytest.approx([8 / 36, 1 / 36, 27 / 36])
    assert alias_shares(*alias_tables(p)) == pytest.approx(p, abs=1e-9)
    counts = np.random.default_rng(0).zipf(1.3, 5000)  # a long tail, as words have
    p = noise_probabilities(counts)
    assert alias_shares(*alias_tables(p)) == pytest.approx(p, abs=1e-9)
    threshold, alias = alias_tables(np.array([8, 1, 27]) / 36)
    state, draws = 7, []
    for _ in range(60_000):  # and the kernel's draws follow them
        state, word = draw_noise(state, threshold, alias)
        draws.append(word)
    assert np.bincount(draws) / 60_000 == pytest.approx([8 / 36, 1 / 36, 27 / 36], abs=0.01)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("cbow", [False, True], ids=["skip-gram", "cbow"])
def test_words_that_co_occur_end_up_closer_than_words_that_do_not(tmp_path, cbow, workers):
    corpus = topic_corpus(tmp_path / "c.txt")
    result = train_word2vec(corpus, tmp_path / "run", cbow=cbow, dim=16, window=3,
                            min_count=1, epochs=3, sample=0, batch_words=200, workers=workers,
                            progress=False)  # fmt: skip
    assert result.steps == 3 * 24  # 4,800 words in blocks of 200, three times
    within, across = mean_cosines(lmlab.load_encoder(tmp_path / "run"))
    assert within > across + 0.3, (within, across)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert lines[-1]["step"] == 72 and lines[-1]["loss"] < lines[0]["loss"]
    assert lines[-1]["lr"] < lines[0]["lr"] == pytest.approx(0.05 if cbow else 0.025)


def test_one_worker_makes_a_run_repeatable_and_the_seed_matters(tmp_path):
    corpus = topic_corpus(tmp_path / "c.txt")
    options = dict(dim=8, window=3, min_count=1, epochs=1, batch_words=1500, workers=1,
                   progress=False)  # fmt: skip
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train_word2vec(corpus, tmp_path / name, seed=seed, **options)
        runs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    assert all(np.array_equal(runs["a"][k], runs["b"][k]) for k in ("input", "output"))
    assert not np.array_equal(runs["a"]["output"], runs["c"]["output"])


def kernel_run(ids, lines, *, dim=8, window=2, negative=3, cbow=False, epochs=1, lr=0.05,
               seed=0, noise=None, vocab=None):  # fmt: skip
    """The kernel on one chunk, alone: the vectors it leaves and the predictions it made."""
    ids, lines = np.asarray(ids, np.int32), np.asarray(lines, np.int32)
    vocab = vocab or int(ids.max()) + 1
    rng = np.random.default_rng(seed)
    syn0 = ((rng.random((vocab, dim)) - 0.5) / dim).astype(np.float32)
    syn1 = np.zeros((vocab, dim), np.float32)
    if noise is None:
        noise = noise_probabilities(np.bincount(ids, minlength=vocab))
    threshold, alias = alias_tables(noise)
    made = 0
    for epoch in range(epochs):
        made += train_chunk(ids, lines, 0, len(ids), syn0, syn1, threshold, alias, window,
                            negative, cbow, lr, seed + epoch, *sigmoid_tables())[1]  # fmt: skip
    return syn0, syn1, made


def predicted(syn0, syn1, word, context):
    """The model's probability that `context` is seen around `word`: sigmoid(in . out)."""
    return 1 / (1 + np.exp(-float(syn0[word] @ syn1[context])))


@pytest.mark.parametrize("cbow", [False, True], ids=["skip-gram", "cbow"])
def test_the_kernel_learns_which_words_are_neighbours_and_never_across_a_line(cbow):
    # lines "0 1" and "2 3" alternate: 1 and 2 follow each other in the text, never on a line
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 2, 3000)
    ids = np.stack([2 * pairs, 2 * pairs + 1], 1).ravel()
    lines = np.repeat(np.arange(len(pairs)), 2)
    syn0, syn1, _ = kernel_run(ids, lines, window=3, cbow=cbow, epochs=3)
    assert predicted(syn0, syn1, 1, 0) > 0.8 and predicted(syn0, syn1, 2, 3) > 0.8
    assert predicted(syn0, syn1, 1, 2) < 0.2 and predicted(syn0, syn1, 2, 1) < 0.2


def test_each_word_draws_its_window_from_one_to_window():
    # one long line: a centre with reach r makes 2r skip-gram predictions; r uniform in 1..5
    # averages 6 per centre (a fixed window of 5 would make 10, a reach of 0..4 four)
    ids = np.arange(20_000) % 50
    _, _, made = kernel_run(ids, np.zeros_like(ids), window=5)
    assert made / len(ids) == pytest.approx(6.0, abs=0.05)
    _, _, made = kernel_run(ids, np.zeros_like(ids), window=5, cbow=True)
    assert made == len(ids)  # CBOW: one prediction per centre


def test_noise_words_come_from_the_table_and_move_only_their_output_rows():
    # lines "0 1 2"; the noise table holds only word 3, which is in no line; 4 is in neither
    ids = np.array([0, 1, 2] * 300)
    lines = np.repeat(np.arange(300), 3)
    syn0, syn1, _ = kernel_run(ids, lines, vocab=5, noise=np.array([0, 0, 0, 1.0, 0]))
    assert np.abs(syn1[3]).sum() > 0  # the noise word's output vector was pushed
    assert predicted(syn0, syn1, 1, 3) < 0.3 < 0.7 < predicted(syn0, syn1, 1, 0)
    assert not syn1[4].any()  # never a centre nor drawn: its output row never moved
    start = ((np.random.default_rng(0).random((5, 8)) - 0.5) / 8).astype(np.float32)
    assert np.array_equal(syn0[3:], start[3:])  # never a context word: input rows as they were


def test_subsampling_keeps_each_word_with_its_probability():
    from lmlab.training.objectives.word2vec import WordPairs
    from lmlab.wordvec.corpus import Corpus

    ids = np.repeat(np.arange(3), [90_000, 9_000, 1_000])
    corpus = Corpus(["a", "b", "c"], np.bincount(ids), ids, np.arange(len(ids)) // 10, len(ids))
    pairs = WordPairs(corpus, sample=0.01, seed=3)
    kept, lines, before = pairs.subsample(epoch=0)
    shares = np.bincount(kept, minlength=3) / np.bincount(ids)
    assert shares == pytest.approx(keep_probabilities(corpus.counts, 0.01), abs=0.01)
    assert before[-1] == len(kept) and np.all(np.diff(lines) >= 0)
    assert not np.array_equal(kept, pairs.subsample(epoch=1)[0])  # drawn again each epoch


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
    code, _, err = run_cli(capsys, "train", "word2vec", str(few), "--min-count", "1",
                           "--workers", "0", "--out", str(tmp_path / "r3"))  # fmt: skip
    assert code == 2 and err.strip().count("\n") == 0 and "--workers" in err


def test_ctrl_c_inside_a_step_lands_after_it_and_resume_is_exact(tmp_path, monkeypatch):
    import os
    import signal

    from lmlab.training import TrainingInterrupted
    from lmlab.training.objectives.word2vec import WordPairs

    corpus = topic_corpus(tmp_path / "c.txt")  # 4,800 words: three steps of 1,600
    options = dict(dim=8, window=3, min_count=1, epochs=1, batch_words=1600, workers=1,
                   progress=False)  # fmt: skip
    train_word2vec(corpus, tmp_path / "whole", **options)
    take_step = WordPairs.take_step

    def interrupted(self, model, lr):
        loss = take_step(self, model, lr)
        if self.block == 2:  # step 2 has moved the vectors: Ctrl-C before it returns
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    with monkeypatch.context() as m:
        m.setattr(WordPairs, "take_step", interrupted)
        with pytest.raises(TrainingInterrupted, match="at step 2"):
            train_word2vec(corpus, tmp_path / "killed", **options)
    train_word2vec(corpus, tmp_path / "killed", resume=True, **options)
    whole, resumed = (
        load_file(str(tmp_path / r / "model.safetensors")) for r in ("whole", "killed")
    )
    assert all(np.array_equal(whole[k], resumed[k]) for k in ("input", "output"))
