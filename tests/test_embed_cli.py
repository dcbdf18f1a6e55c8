"""The embedding commands as a user runs them (real processes, exit codes, one-line errors)."""

import json

import pytest
from test_cli import lmlab

pytestmark = pytest.mark.slow

TEXTS = [
    "The central bank raised interest rates.",
    "Bond yields rose after the announcement.",
    "The cat sat on the mat.",
    "Kittens like to sleep.",
    "The striker scored twice.",
    "The match ended in a draw.",
]


def test_similarity_table():
    out = lmlab("similarity", "bank", "banks", "river", "money", "--json")
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)["matrix"]
    assert m[0][1] == pytest.approx(0.947, abs=0.005) and m[0][1] > m[0][2]
    text = lmlab("similarity", "bank", "banks").stdout
    assert "0.947" in text or "0.946" in text or "0.948" in text


def test_index_search_cluster_map_pca(tmp_path):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    assert lmlab("index", "build", str(src), "--out", str(tmp_path / "idx")).returncode == 0
    out = lmlab("search", str(tmp_path / "idx"), "monetary policy", "-k", "2", "--json")
    hits = json.loads(out.stdout)
    assert hits[0]["text"] == TEXTS[0] and len(hits) == 2
    out = lmlab("cluster", str(src), "-k", "3", "--json")
    clusters = json.loads(out.stdout)["clusters"]
    assert sorted(sorted(c["members"]) for c in clusters) == sorted(
        sorted(TEXTS[i : i + 2]) for i in (0, 2, 4)
    )
    out = lmlab("map", str(src), "--method", "pca", "--out", str(tmp_path / "m.png"), "-k", "3")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    out = lmlab("pca", str(src), "--out", str(tmp_path / "p.png"), "--json")
    curve = json.loads(out.stdout)
    assert curve["components"] == [1, 2, 3, 4, 5, 6] and curve["error"][-1] < 1e-6


def test_user_mistakes_exit_2(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("id,body\n1,hello\n")
    txt = tmp_path / "t.txt"
    txt.write_text("a cat\na dog\nthe bank\n")
    cases = [
        ("embed", str(csv), "--out", str(tmp_path / "o.npy")),
        (
            "embed",
            str(csv),
            "--column",
            "body",
            "--out",
            str(tmp_path / "o.npy"),
            "--dimensions",
            "0",
        ),
        ("search", str(tmp_path), "query"),
        ("similarity", "one"),
        ("cluster", str(tmp_path / "missing.txt")),
        ("pca", str(txt), "--max-components", "0", "--out", str(tmp_path / "p.png")),
    ]
    for args in cases:
        out = lmlab(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith("error:") and len(out.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.txt"]


def test_train_bow_then_use_it(tmp_path):
    src = tmp_path / "corpus.txt"
    src.write_text("the man bites the dog\nthe dog sleeps\n")
    out = lmlab("train", "tfidf", str(src), "--out", str(tmp_path / "enc"), "--json")
    assert json.loads(out.stdout)["vocabulary"] == 5
    out = lmlab(
        "similarity", "man bites dog", "dog bites man", "--model", str(tmp_path / "enc"), "--json"
    )
    assert json.loads(out.stdout)["matrix"][0][1] == pytest.approx(1)
