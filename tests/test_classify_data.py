"""Reading labelled tables: four formats, guessed columns, and one clear error per mistake."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmlab.classify.data import read_labelled, read_unlabelled
from lmlab.errors import LmlabError

ROWS = [("a fine film", 1), ("a dull film", 0), ("great acting", 1)]


def write(tmp_path, suffix, rows=ROWS, names=("sentence", "label")):
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)}), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(zip(names, r, strict=True))) + "\n" for r in rows))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        lines = [sep.join(names)] + [sep.join("" if v is None else str(v) for v in r) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_every_format_reads_the_same(tmp_path, suffix):
    table = read_labelled(write(tmp_path, suffix))
    assert table.texts == [r[0] for r in ROWS]
    assert table.labels == ["1", "0", "1"]
    assert (table.text_col, table.label_col, table.guessed) == (
        "sentence",
        "label",
        ["text", "label"],
    )
    assert read_unlabelled(write(tmp_path, suffix)).texts == table.texts


def test_float_labels_read_as_integers(tmp_path):
    rows = [("x", 1.0), ("y", 2.0)]
    assert read_labelled(write(tmp_path, ".jsonl", rows)).labels == ["1", "2"]


def error(fn, *args) -> str:
    with pytest.raises(LmlabError) as e:
        fn(*args)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_errors_say_what_to_fix(tmp_path):
    assert "no such file" in error(read_labelled, tmp_path / "missing.csv")
    path = write(tmp_path, ".csv")
    message = error(read_labelled, path, "body", "label")
    assert "'body'" in message and "columns: sentence, label" in message
    missing = [("a", 1), ("b", None), ("c", 0), ("d", None)]
    message = error(read_labelled, write(tmp_path, ".jsonl", missing))
    assert "2 rows have no value in label column 'label'" in message and "rows 2, 4" in message
    numbers = [(1, "x"), (2.5, "y")]
    message = error(read_labelled, write(tmp_path, ".csv", numbers, ("score", "label")), "score")
    assert "'score' holds numbers" in message
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    assert "has no rows" in error(read_labelled, empty)
    two = write(tmp_path, ".csv", [("a", "b", 1)], ("text", "review", "label"))
    assert "--text-col" in error(read_labelled, two)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello\n")
    assert "must end in .csv, .tsv, .jsonl, .parquet" in error(read_labelled, txt)
