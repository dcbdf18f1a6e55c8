"""`lmlab classify fit|predict|eval|compare` end to end, in process, on a table made here."""

import json

import pyarrow.parquet as pq
import pytest
from classify_data import corpus

from lmlab.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def table(path, texts, labels, names=("text", "label")):
    lines = [",".join(names)] + [f"{t},{label}" for t, label in zip(texts, labels, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def data(tmp_path):
    return table(tmp_path / "train.csv", *corpus(240)), table(tmp_path / "test.csv", *corpus(60, 1))


def test_fit_predict_eval_compare(tmp_path, capsys, data):
    train, test = data
    clf = tmp_path / "clf"
    code, out, err = run(
        capsys, "classify", "fit", str(train), "--encoder", "bow", "--out", str(clf), "--json"
    )
    assert code == 0, err
    fitted = json.loads(out)
    assert fitted["classes"] == ["mid", "neg", "pos"] and fitted["n"] == 240
    assert "using text column 'text', label column 'label'" in err

    code, out, err = run(capsys, "classify", "predict", str(clf), str(test))
    assert code == 0, err
    lines = out.splitlines()
    # the input's gold labels are kept as they are, the prediction beside them
    assert lines[0] == "text,label,predicted,p_mid,p_neg,p_pos" and len(lines) == 61
    first = lines[1].split(",")
    assert first[:2] == test.read_text().splitlines()[1].split(",")
    assert abs(sum(map(float, first[3:])) - 1) < 1e-5
    assert first[2] == ["mid", "neg", "pos"][max(range(3), key=lambda i: float(first[3 + i]))]
    for suffix in (".jsonl", ".parquet"):
        out_file = tmp_path / f"pred{suffix}"
        assert (
            run(capsys, "classify", "predict", str(clf), str(test), "--out", str(out_file))[0] == 0
        )
        rows = (
            [json.loads(x) for x in out_file.read_text().splitlines()]
            if suffix == ".jsonl"
            else pq.read_table(out_file).to_pylist()
        )
        assert len(rows) == 60 and (rows[0]["label"], rows[0]["predicted"]) == tuple(first[1:3])

    png = tmp_path / "confusion.png"
    code, out, err = run(
        capsys, "classify", "eval", str(clf), str(test), "--json", "--confusion", str(png)
    )
    assert code == 0, err
    report = json.loads(out)
    assert sum(map(sum, report["confusion"])) == 60 and report["accuracy"] > 0.5
    assert set(report) >= {"accuracy", "macro_f1", "per_class", "confusion"}
    assert png.read_bytes()[:4] == b"\x89PNG"

    code, out, err = run(
        capsys,
        "classify",
        "compare",
        str(train),
        str(test),
        "--methods",
        "logit",
        "lasso",
        "mlp",
        "--encoder",
        "tfidf",
        "--limit-train",
        "150",
        "--json",
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["method"] for r in rows] == ["logit", "lasso", "mlp"]
    assert all(0.4 < r["accuracy"] <= 1 and r["fit_seconds"] > 0 for r in rows)
    assert "selected_count" in rows[1]["notes"] and "epochs_run" in rows[2]["notes"]
    code, out, _ = run(
        capsys,
        "classify",
        "compare",
        str(train),
        str(test),
        "--methods",
        "logit,lasso",
        "--encoder",
        "bow",
    )
    assert code == 0 and out.splitlines()[0].split()[:3] == ["method", "accuracy", "macro-F1"]
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["logit", "lasso"]


def test_user_mistakes_exit_2_with_one_line(tmp_path, capsys, data):
    train, test = data
    one_class = table(tmp_path / "one.csv", ["a", "b"], ["x", "x"])
    missing = tmp_path / "missing.csv"
    missing.write_text("text,label\na,x\nb,\nc,y\n")
    numbers = table(tmp_path / "numbers.csv", ["1", "2"], ["x", "y"], ("score", "label"))
    out = str(tmp_path / "clf")
    zero_shot = ["fit", str(train), "--method", "zero-shot", "--via", "cosine"]
    cases = [
        (["fit", str(one_class), "--encoder", "bow", "--out", out], "one class only"),
        (
            ["fit", str(missing), "--out", out],
            "1 rows have no value in label column 'label' (rows 2)",
        ),
        (["fit", str(numbers), "--text-col", "score", "--out", out], "'score' holds numbers"),
        (
            ["fit", str(train), "--hidden", "8", "--out", out],
            "--hidden does not apply to method logit (its options: --encoder, --penalty, --C, "
            "--class-weight)",
        ),
        (["fit", str(train), "--text-col", "body", "--out", out], "columns: text, label"),
        (["fit", str(train), "--method", "svm", "--out", out], "unknown method 'svm'"),
        (["fit", str(tmp_path / "nope.csv"), "--out", out], "no such file"),
        (["eval", str(tmp_path), str(test)], "not a saved classifier"),
        (["compare", str(train), str(test)], "name the methods"),
        (
            ["fit", str(train), "--method", "zero-shot", "--verbalizers", "pos", "--out", out],
            "--verbalizers takes label=word pairs",
        ),
        (
            [*zero_shot, "--verbalizers", "pos=good,neg=good", "--out", out],
            "two classes share the word 'good' (neg and pos)",
        ),
        (["eval", str(tmp_path), str(test), "--confusion", "c.gif"], "a figure must end in"),
    ]
    for args, expected in cases:
        code, _, err = run(capsys, "classify", *args)
        assert code == 2, (args, err)
        # The only other line allowed is the note naming the guessed columns.
        lines = [line for line in err.splitlines() if not line.startswith("using ")]
        assert len(lines) == 1 and lines[0].startswith("error:"), err
        assert expected in err, err
    assert not (tmp_path / "clf").exists()

    # Unseen labels at evaluation, and a saved head that does not fit the encoder named.
    assert run(capsys, "classify", "fit", str(train), "--encoder", "bow", "--out", out)[0] == 0
    other = table(tmp_path / "other.csv", ["good", "bad"], ["pos", "awful"])
    code, _, err = run(capsys, "classify", "eval", out, str(other))
    assert code == 2 and "labels not seen in training: 'awful'" in err
    meta = json.loads((tmp_path / "clf" / "probe.json").read_text())
    meta["dimension"] = 384
    (tmp_path / "clf" / "probe.json").write_text(json.dumps(meta))
    code, _, err = run(capsys, "classify", "predict", out, str(test))
    assert code == 2 and "gives 8-d vectors" in err and "fitted on 384-d" in err


def test_verbalizers_name_the_labels_of_a_zero_shot_classifier(tmp_path, capsys, data):
    train, _ = data
    out = tmp_path / "zs"
    words = "pos=good, neg=bad,mid=so-so"
    args = ["fit", str(train), "--method", "zero-shot", "--via", "cosine", "--verbalizers", words]
    assert run(capsys, "classify", *args, "--out", str(out))[0] == 0
    saved = json.loads((out / "lmlab.json").read_text())["options"]["verbalizers"]
    assert saved == {"pos": "good", "neg": "bad", "mid": "so-so"}


def test_predict_keeps_every_input_column(tmp_path, capsys, data):
    train, _ = data
    clf = tmp_path / "clf"
    assert run(capsys, "classify", "fit", str(train), "--encoder", "bow", "--out", str(clf))[0] == 0
    new = tmp_path / "new.jsonl"
    rows = [{"id": 7, "stars": "pos", "text": "a great film", "year": 2001}, {"text": "a bad film"}]
    new.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "pred.csv"
    code, _, err = run(capsys, "classify", "predict", str(clf), str(new), "--out", str(out))
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "id,stars,text,year,predicted,p_mid,p_neg,p_pos"
    assert lines[1].startswith("7,pos,a great film,2001,") and lines[2].startswith(",,a bad film,,")
    again = tmp_path / "again.csv"  # a prediction file has the columns predict would add
    code, _, err = run(capsys, "classify", "predict", str(clf), str(out), "--out", str(again))
    assert code == 2 and "pred.csv has a column 'predicted' already" in err
    assert not again.exists()
