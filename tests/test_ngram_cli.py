"""The n-gram commands as a user runs them: train, eval, table, compare, generate."""

import csv
import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmlab.evaluate import evaluate_file, perplexity

# A made-up corpus with the lecture's words (Berkeley Restaurant Project style).
RESTAURANT = """i want to eat chinese food
i want to spend less
i want chinese food
to eat lunch
i want lunch
"""
LECTURE_WORDS = ["i", "want", "to", "eat", "chinese", "food", "lunch", "spend"]
PTB = Path(__file__).parents[1] / ".." / "shared" / "data" / "ptb"


def lmlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmlab", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
    )


def test_help_lists_the_ngram_commands():
    assert all(c in lmlab("--help").stdout for c in ("eval", "ngram", "train"))
    for command in (["eval"], ["train", "ngram"], ["ngram", "table"], ["ngram", "compare"]):
        out = lmlab(*command, "--help")
        assert out.returncode == 0 and "Usage" in out.stdout, command


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ngram")
    (root / "train.txt").write_text(RESTAURANT)
    out = lmlab(
        "train",
        "ngram",
        root / "train.txt",
        "--order",
        "2",
        "--smoothing",
        "mle",
        "--out",
        root / "run",
    )
    assert out.returncode == 0, out.stderr
    return root / "run"


def test_train_writes_an_arpa_model_directory(run_dir):
    meta = json.loads((run_dir / "lmlab.json").read_text())
    assert meta["kind"] == "ngram" and meta["order"] == 2 and meta["smoothing"] == "mle"
    assert meta["sentences"] == 5 and meta["words"] == 21
    assert (run_dir / "model.arpa").read_text().startswith("\\data\\\nngram 1=")


def test_table_prints_the_lecture_bigram_tables(run_dir, tmp_path):
    out = lmlab("ngram", "table", run_dir, "--words", *LECTURE_WORDS, "--json")
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    i = {w: k for k, w in enumerate(LECTURE_WORDS)}
    counts, probs = table["counts"], table["probs"]
    assert counts[i["i"]][i["want"]] == 4
    assert counts[i["want"]][i["to"]] == 2 and counts[i["want"]][i["chinese"]] == 1
    assert counts[i["to"]][i["eat"]] == 2 and counts[i["to"]][i["spend"]] == 1
    assert counts[i["eat"]][i["lunch"]] == 1 and counts[i["food"]][i["i"]] == 0
    assert probs[i["i"]][i["want"]] == pytest.approx(1.0)  # 4 / 4
    assert probs[i["want"]][i["to"]] == pytest.approx(0.5)  # 2 / 4
    assert probs[i["to"]][i["eat"]] == pytest.approx(2 / 3)
    assert probs[i["chinese"]][i["food"]] == pytest.approx(1.0)
    assert table["unigram_counts"][i["want"]] == 4
    text = lmlab("ngram", "table", run_dir, "--words", *LECTURE_WORDS, "--csv", tmp_path / "t.csv")
    assert text.returncode == 0, text.stderr
    assert "bigram counts" in text.stdout and "0.67" in text.stdout
    rows = list(csv.reader((tmp_path / "t.csv").open()))
    assert rows[0] == ["table", "previous", *LECTURE_WORDS]
    assert rows[1][:4] == ["count", "i", "0", "4"]
    prob_row = next(r for r in rows if r[:2] == ["probability", "want"])
    assert prob_row[2 + LECTURE_WORDS.index("to")] == "0.5"  # not float32's 0.4999999...
    unknown = lmlab("ngram", "table", run_dir, "--words", "i", "zebra")
    assert unknown.returncode == 2 and "not in the model's vocabulary: zebra" in unknown.stderr


def test_eval_reports_srilm_counts_and_json_keys(run_dir, tmp_path):
    test = tmp_path / "test.txt"
    test.write_text("i want chinese food\ni want pizza\n")
    out = lmlab("eval", run_dir, test, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # 4 + 3 words and two </s>, pizza is OOV: 8 tokens scored
    assert (data["tokens"], data["oov"], data["sentences"]) == (8, 1, 2)
    # mle: p(i|<s>) = 4/5, p(want|i) = 1, p(chinese|want) = 1/4, p(food|chinese) = 1,
    # p(</s>|food) = 1; second: 4/5, 1, then pizza skipped, p(</s>|<unk>) backs off to p(</s>)
    p_end = 5 / 26  # c(</s>) / (21 words + 5 </s>)
    probs = [4 / 5, 1, 1 / 4, 1, 1, 4 / 5, 1, p_end]
    expected = math.exp(-sum(math.log(p) for p in probs) / 8)
    assert data["perplexity"] == pytest.approx(expected, rel=1e-5)
    assert data["loss"] == pytest.approx(math.log(expected), rel=1e-5)
    plain = lmlab("eval", run_dir, test)
    assert "perplexity:" in plain.stdout and "OOV:           1" in plain.stdout


def test_score_of_a_file_reads_its_sentences_as_eval_does(run_dir, tmp_path):
    test = tmp_path / "test.txt"
    test.write_text("i want chinese food\n\ni want lunch\n")  # a blank line is no sentence
    evaluated = json.loads(lmlab("eval", run_dir, test, "--json").stdout)
    out = lmlab("score", test, "--model", run_dir, "--json", "--per-token")
    assert out.returncode == 0, out.stderr
    scored = json.loads(out.stdout)
    assert scored["tokens"] == evaluated["tokens"] == 9  # 7 words and two </s>
    assert scored["perplexity"] == pytest.approx(evaluated["perplexity"], rel=1e-6)
    # after the first sentence's </s>, "i" is scored as a sentence start again: p(i | <s>)
    tokens = [t["token"] for t in scored["per_token"]]
    assert tokens[:5] == ["i", "want", "chinese", "food", "</s>"]
    first, second = scored["per_token"][0], scored["per_token"][5]
    assert second["token"] == "i" and second["logprob"] == pytest.approx(first["logprob"])


def test_json_of_an_impossible_text_is_strict(run_dir, tmp_path):
    test = tmp_path / "test.txt"
    test.write_text("i eat\n")  # mle: p(eat | i) = 0, an infinite perplexity
    out = lmlab("eval", run_dir, test, "--json")
    assert out.returncode == 0, out.stderr
    assert "Infinity" not in out.stdout and "NaN" not in out.stdout
    data = json.loads(out.stdout, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    assert data["perplexity"] is None and data["tokens"] == 3


def test_generate_samples_a_sentence(run_dir):
    args = ["generate", "--model", run_dir, "", "--max-tokens", "30", "--seed", "1"]
    first, second = lmlab(*args), lmlab(*args)
    assert first.returncode == 0, first.stderr
    words = first.stdout.split()
    assert words and set(words) <= set(RESTAURANT.split())
    assert first.stdout == second.stdout


def test_compare_prints_perplexity_by_order(tmp_path):
    (tmp_path / "train.txt").write_text(RESTAURANT * 3)
    (tmp_path / "test.txt").write_text("i want to eat lunch\ni want food\n")
    out = lmlab(
        "ngram",
        "compare",
        tmp_path / "train.txt",
        tmp_path / "test.txt",
        "--orders",
        "1",
        "2",
        "3",
        "--smoothing",
        "kn",
        "--json",
        "--png",
        tmp_path / "ppl.png",
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["order"] for r in rows] == [1, 2, 3]
    assert all(r["tokens"] == 10 and r["smoothing"] == "kn" for r in rows)
    assert rows[1]["perplexity"] < rows[0]["perplexity"]
    assert (tmp_path / "ppl.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "ngram", "EMPTY", "--out", "OUT"], "no sentence found"),
        (["train", "ngram", "CORPUS", "--order", "0", "--out", "OUT"], "--order must be"),
        (
            ["train", "ngram", "CORPUS", "--smoothing", "add-k", "--k", "0", "--out", "OUT"],
            "add-k needs a finite --k > 0",
        ),
        (
            ["train", "ngram", "CORPUS", "--smoothing", "add-k", "--k", "inf", "--out", "OUT"],
            "add-k needs a finite --k > 0 (got inf)",
        ),
        (["train", "ngram", "CORPUS", "--out", "MINE"], "not an earlier output to replace"),
        (["eval", "DAMAGED", "CORPUS"], "model.npz is damaged"),
        (["train", "ngram", "MISSING", "--out", "OUT"], "cannot read"),
        (["eval", "BADARPA", "CORPUS"], "not a valid ARPA file"),
        (["eval", "OUT"], "give either a TEXT_FILE or --split (neither was given)"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "c.txt").write_text("a b\n")
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1 a\n\n\\end\\\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "lmlab.json").write_text('{"kind": "ngram", "arpa": "model.arpa", "order": 2}')
    (damaged / "model.npz").write_bytes(b"PK\x03\x04 cut short")
    names = {
        "EMPTY": tmp_path / "empty.txt",
        "CORPUS": tmp_path / "c.txt",
        "MISSING": tmp_path / "nope.txt",
        "BADARPA": tmp_path / "bad.arpa",
        "OUT": tmp_path / "out",
        "MINE": tmp_path / "mine",
        "DAMAGED": damaged,
    }
    out = lmlab(*[names.get(a, a) for a in args])
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    if args[0] == "train":
        assert not (tmp_path / "out").exists()  # nothing half-written
        assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"  # nothing lost


def test_eval_split_reads_the_run_directory(run_dir, tmp_path):
    out = lmlab("eval", run_dir, "--split", "valid")
    assert out.returncode == 2 and "valid.txt does not exist" in out.stderr
    (run_dir / "test.txt").write_text("i want lunch\n")
    try:
        data = json.loads(lmlab("eval", run_dir, "--split", "test", "--json").stdout)
    finally:
        (run_dir / "test.txt").unlink()
    assert data["file"].endswith("test.txt") and (data["tokens"], data["sentences"]) == (4, 1)


def test_evaluate_file_for_any_language_model(tmp_path):
    from mock_lm import BigramLM

    path = tmp_path / "t.txt"
    path.write_text("hello there\nsecond line\n")
    lm = BigramLM()
    ev = evaluate_file(lm, path)
    assert ev.convention == "window" and ev.sentences is None and ev.oov is None
    assert ev.perplexity == pytest.approx(perplexity(lm, path))


@pytest.mark.slow
@pytest.mark.skipif(not PTB.is_dir(), reason="needs ../shared/data/ptb")
def test_ptb_five_gram_mkn_matches_the_published_perplexity(tmp_path):
    out = lmlab("train", "ngram", PTB / "ptb.train.txt", "--order", "5", "--out", tmp_path / "m")
    assert out.returncode == 0, out.stderr
    data = json.loads(lmlab("eval", tmp_path / "m", PTB / "ptb.test.txt", "--json").stdout)
    # Mikolov et al. (2011), SRILM KN5 on this data: 141.2
    assert data["perplexity"] == pytest.approx(141.2, rel=0.01)
    assert data["tokens"] == 82430 and data["oov"] == 0
    arpa = lmlab("eval", tmp_path / "m" / "model.arpa", PTB / "ptb.test.txt", "--json")
    assert json.loads(arpa.stdout)["perplexity"] == pytest.approx(data["perplexity"], rel=1e-5)


def test_lmlab_train_ngram_from_python_matches_the_command(tmp_path):
    import lmlab as api

    corpus, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    corpus.write_text(RESTAURANT)
    valid.write_text("i want chinese food\nto eat\n")
    out = lmlab(
        "train", "ngram", corpus, "--out", tmp_path / "cli", "--order", "2", "--smoothing", "kn"
    )
    assert out.returncode == 0, out.stderr
    options = {"order": 2, "smoothing": "kn", "gzip": True}
    result = api.train("ngram", [corpus], tmp_path / "py", valid=valid, model_options=options)
    assert result.out == str(tmp_path / "py") and result.steps == 0
    with gzip.open(tmp_path / "py" / "model.arpa.gz", "rt") as f:
        assert f.read() == (tmp_path / "cli" / "model.arpa").read_text()
    expected = evaluate_file(tmp_path / "cli", valid)
    assert result.valid_perplexity == pytest.approx(expected.perplexity)
    assert result.valid_loss == pytest.approx(expected.loss)
    assert result.train_loss == pytest.approx(evaluate_file(tmp_path / "cli", corpus).loss)
    for wrong, message in [
        ({"preset": "tiny"}, "preset does not apply"),
        ({"config": api.TrainConfig(steps=5)}, "config does not apply"),
        ({"model_options": {"layers": 2}}, "no option layers"),
        ({"progress": print}, "progress must be True or False"),
    ]:
        with pytest.raises(api.LmlabError, match=message):
            api.train("ngram", [corpus], tmp_path / "bad", **wrong)
