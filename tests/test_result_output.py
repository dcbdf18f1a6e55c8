"""Results print as results: short reprs, long tables summarised, warnings on degenerate ones."""

import json
import re
import warnings

import numpy as np
import pytest
from mock_lm import BigramLM
from test_cli import lmlab as run_lmlab

import lmlab
from lmlab.classify.metrics import classification_report
from lmlab.cli.app import SHOWN_ROWS, table_rows
from lmlab.decode import generate
from lmlab.embed.cluster import cluster
from lmlab.embed.maps import LABEL_UP_TO, map_figure
from lmlab.embed.sparse import BagOfWordsEncoder

LONG = "the quick brown fox jumps over the lazy dog. " * 40  # 1,800 bytes: tokens of BigramLM


def test_a_score_of_a_long_text_prints_its_totals_not_its_tokens():
    s = lmlab.score(BigramLM(), LONG)
    assert s.n_tokens == len(LONG) - 1 and len(s.logprobs) == len(s.token_ids) == s.n_tokens
    assert repr(s) == (
        f"Score(tokens={s.n_tokens}, total_logprob={s.total_logprob:.6g}, "
        f"perplexity={s.perplexity:.6g})"
    )


def test_generation_and_evaluation_reprs_show_the_numbers(tmp_path):
    out = generate(BigramLM(), "Once upon a time", max_tokens=60, temperature=0)
    text = repr(out)
    assert text.startswith("Generation(text=") and "finish_reason=" in text
    assert f"prompt_tokens=16, completion_tokens={len(out.token_ids)})" in text
    assert str(out.token_ids[:3])[1:-1] not in text and len(text) < 160
    assert repr(out.choices[0]).startswith("Choice(index=0, text=")
    path = tmp_path / "t.txt"
    path.write_text(LONG)
    ev = lmlab.evaluate_file(BigramLM(), path)
    assert repr(ev) == (
        f"Evaluation(perplexity={ev.perplexity:.6g}, loss={ev.loss:.6g}, tokens={ev.tokens}, "
        "convention='window')"
    )


def test_report_and_clustering_reprs_leave_the_arrays_out():
    report = classification_report(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])
    assert repr(report) == "Report(accuracy=0.666667, macro_f1=0.666667, n=3, classes=['a', 'b'])"
    assert "confusion" in str(report)  # print(report) still gives the whole table
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(100, 16)) + 5, rng.normal(size=(100, 16)) - 5])
    result = cluster(x, 2)
    assert re.fullmatch(
        r"Clustering\(method='kmeans', clusters=2, texts=200, sizes=\[100, 100\], "
        r"silhouette=0\.\d+\)",
        repr(result),
    )


def test_long_tables_show_their_ends_and_say_what_was_left_out():
    rows = list(range(150))
    shown, note = table_rows(rows)
    assert shown == [*range(SHOWN_ROWS), None, *range(150 - SHOWN_ROWS, 150)]
    assert note == "(130 of 150 rows not shown: --all prints them, --json gives all)"
    assert table_rows(rows, show_all=True) == (rows, None)
    assert table_rows(rows[:25]) == (rows[:25], None)  # hiding a handful saves nothing


@pytest.fixture(scope="module")
def tfidf(tmp_path_factory):
    """60 texts and a TF-IDF encoder fitted on them (no model to load: quick processes)."""
    root = tmp_path_factory.mktemp("tfidf")
    texts = root / "texts.txt"
    texts.write_text("".join(f"word{i} common{i % 7} thing{i % 3}\n" for i in range(60)))
    out = run_lmlab("train", "tfidf", str(texts), "--out", str(root / "enc"))
    assert out.returncode == 0, out.stderr
    return texts, root / "enc"


@pytest.mark.slow
def test_cli_pca_summarises_its_table_unless_asked_for_all(tfidf, tmp_path):
    texts, enc = tfidf
    args = ["pca", str(texts), "--model", str(enc), "--out", str(tmp_path / "p.png")]
    ks = json.loads(run_lmlab(*args, "--json").stdout)["components"]
    assert len(ks) > 2 * SHOWN_ROWS + 5
    out = run_lmlab(*args)
    assert out.returncode == 0, out.stderr
    shown = [int(line.split()[0]) for line in out.stdout.splitlines() if line.split()[0].isdigit()]
    assert shown == ks[:SHOWN_ROWS] + ks[-SHOWN_ROWS:]
    assert f"({len(ks) - 2 * SHOWN_ROWS} of {len(ks)} rows not shown: --all" in out.stdout
    every = run_lmlab(*args, "--all").stdout
    assert [int(line.split()[0]) for line in every.splitlines() if line[:5].strip().isdigit()] == ks
    assert "not shown" not in every


def test_similarity_of_a_text_without_a_known_word_warns():
    enc = BagOfWordsEncoder.fit(["the dog bites the man", "the man bites the dog"])
    with pytest.warns(UserWarning, match="no word of 'qwerty zzz' is in the vocabulary of bow"):
        m = lmlab.similarity(["qwerty zzz", "the dog"], model=enc)
    assert m[0, 0] == 0 and m[1, 1] == pytest.approx(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every text has a known word: no warning
        lmlab.similarity(["man", "the dog"], model=enc)


@pytest.mark.slow
def test_cli_similarity_says_which_text_has_no_known_word(tfidf):
    _, enc = tfidf
    out = run_lmlab("similarity", "qwerty", "word1 thing2", "--model", str(enc))
    assert out.returncode == 0 and "0.000" in out.stdout
    assert out.stderr.splitlines() == [
        f"warning: no word of 'qwerty' is in the vocabulary of {enc}: a zero vector, whose "
        "similarity is 0 to every text (itself included) and means nothing"
    ]


def test_maps_label_points_only_when_few_and_title_the_legend():
    rng = np.random.default_rng(0)
    for n, asked, labelled in [
        (LABEL_UP_TO, None, True),
        (LABEL_UP_TO + 1, None, False),
        (150, True, True),
        (10, False, False),
    ]:
        points = rng.normal(size=(n, 2))
        fig = map_figure(points, [f"text {i}" for i in range(n)], show_labels=asked)
        assert len(fig.axes[0].texts) == (n if labelled else 0), (n, asked)
    colors = ["0", "1"] * 30
    fig = map_figure(rng.normal(size=(60, 2)), ["t"] * 60, colors=colors, legend_title="urgent")
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == "urgent"
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1"]


def test_a_umap_map_leaks_no_warning():
    pytest.importorskip("umap")
    from lmlab.embed.maps import project

    x = np.random.default_rng(0).normal(size=(60, 16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        points = project(x, "umap", seed=0)
    assert points.shape == (60, 2)
    # umap-learn said "n_jobs value 1 overridden to 1 by setting random_state" on every map
    shown = [w for w in caught if not issubclass(w.category, ImportWarning | DeprecationWarning)]
    assert [str(w.message) for w in shown] == []


@pytest.mark.slow
def test_cli_score_of_a_long_text_and_its_per_token_table(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the stock market fell\nthe market rose\n" * 5)
    out = run_lmlab("train", "ngram", str(corpus), "--order", "2", "--out", str(tmp_path / "m"))
    assert out.returncode == 0, out.stderr
    long_text = "the stock market fell " * 20  # one line, too long to be a file name
    out = run_lmlab("score", long_text, "--model", str(tmp_path / "m"), "--per-token")
    assert out.returncode == 0, out.stderr  # was: error: [Errno 36] File name too long
    assert "tokens scored: 80" in out.stdout
    assert "(60 of 80 rows not shown: --all prints them, --json gives all)" in out.stdout
    every = run_lmlab("score", long_text, "--model", str(tmp_path / "m"), "--per-token", "--all")
    assert every.stdout.count("'market'") == 20 and "not shown" not in every.stdout


def test_methods_and_indexes_have_readable_reprs():
    from lmlab.classify.prompting import FewShot

    assert repr(FewShot(shots=8, seed=1)).startswith("FewShot(shots=8, seed=1, model=")
    enc = BagOfWordsEncoder.fit(["the dog bites the man", "a cat"])
    index = lmlab.VectorIndex(enc).add(["the dog", "a cat", "the man"])
    assert repr(index) == "VectorIndex('bow', texts=3, approximate=False)"


@pytest.mark.slow
def test_cli_map_of_60_texts_has_no_labels_unless_asked_and_titles_its_legend(tfidf, tmp_path):
    texts, enc = tfidf
    table = tmp_path / "t.csv"
    lines = texts.read_text().splitlines()
    table.write_text("text,urgent\n" + "".join(f"{t},{i % 2}\n" for i, t in enumerate(lines)))

    def svg_texts(*options: str) -> str:
        out = tmp_path / "m.svg"
        args = ["map", str(table), "--model", str(enc), "--method", "pca", "--out", str(out)]
        result = run_lmlab(*args, "--color-by", "urgent", *options)
        assert result.returncode == 0, result.stderr
        return out.read_text().count('<g id="text_')  # one group per text artist

    plain = svg_texts()  # the title, the legend's title and its two entries
    assert plain <= 5
    assert svg_texts("--labels") == plain + 60  # and one label per text
    assert svg_texts("--no-labels") == plain
