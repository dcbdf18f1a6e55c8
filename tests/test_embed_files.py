"""Reading the user's text files: strict UTF-8 with the line of a bad byte, a byte-order mark
ignored, null ids and non-string texts; the same for every format and every command."""

import json

import pytest

from lmlab.classify.data import read_labelled
from lmlab.cli import main
from lmlab.embed.batch import read_texts
from lmlab.errors import LmlabError

BOM = b"\xef\xbb\xbf"
# The same two rows in each format; line 2 of each holds "café" in Latin-1 (byte 0xe9).
LATIN1 = {
    "t.txt": b"first line\ncaf\xe9 au lait\n",
    "t.csv": b"text,label\ncaf\xe9 au lait,1\nthe bank,0\n",
    "t.tsv": b"text\tlabel\ncaf\xe9 au lait\t1\nthe bank\t0\n",
    "t.jsonl": b'{"text": "caf\xe9", "label": 1}\n{"text": "the bank", "label": 0}\n',
}


@pytest.mark.parametrize("name", sorted(LATIN1))
def test_bytes_that_are_not_utf8_are_one_error_naming_the_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(LATIN1[name])
    line = 1 if name.endswith(".jsonl") else 2
    expected = f"{name} is not UTF-8 (line {line}, byte 0xe9): save it as UTF-8"
    with pytest.raises(LmlabError) as e:
        read_texts(path)  # used to replace the byte (txt, csv) or raise UnicodeDecodeError
    assert str(e.value) == expected
    if name != "t.txt":  # classify reads tables through the same reader
        with pytest.raises(LmlabError, match="not UTF-8"):
            read_labelled(path)


def test_a_bad_byte_far_into_the_file_is_found(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 100 + b"\n" + b"ok\n" * 20_000 + b"\x93quoted\x94\n")
    with pytest.raises(LmlabError, match=r"line 20002, byte 0x93"):
        read_texts(path)


@pytest.mark.parametrize("name", sorted(LATIN1))
def test_a_byte_order_mark_is_ignored(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BOM + LATIN1[name].replace(b"caf\xe9", "café".encode()))
    texts = [t for _, t in read_texts(path)]  # "text" found, and no U+FEFF in the first text
    expected = {"t.txt": "first line", "t.jsonl": "café"}.get(name, "café au lait")
    assert texts[0] == expected and len(texts) == 2
    if name != "t.txt":
        table = read_labelled(path)  # the text column is found by its name
        assert table.text_col == "text" and table.labels == ["1", "0"]


def test_null_ids_are_row_numbers_and_a_list_is_not_a_text(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"id": None, "text": "a"}, {"id": "k", "text": "b"}, {"id": "", "text": "c"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_texts(path) == [("1", "a"), ("k", "b"), ("3", "c")]
    path.write_text(json.dumps({"text": "fine"}) + "\n\n" + json.dumps({"text": ["x", "y"]}))
    message = "rows.jsonl line 3: the text in column 'text' is a list; it must be a string"
    with pytest.raises(LmlabError, match=message):
        read_texts(path)
    path.write_text(
        json.dumps({"text": "good", "label": 1}) + "\n" + json.dumps({"text": {"a": 1}, "label": 0})
    )
    with pytest.raises(LmlabError, match="line 2: the text in column 'text' is an object"):
        read_labelled(path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_commands_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "caf\xe9"}\n')
    for args in (
        ("embed", str(bad), "--out", str(tmp_path / "b.npy")),
        ("classify", "fit", str(bad), "--out", str(tmp_path / "clf")),
    ):
        code, _, err = run(capsys, *args)
        assert code == 2, err
        assert err == "error: bad.jsonl is not UTF-8 (line 1, byte 0xe9): save it as UTF-8\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_euclidean_table_is_titled_as_distances(capsys):
    code, out, err = run(capsys, "similarity", "a cat", "a dog", "--metric", "euclidean")
    assert code == 0, err
    assert "euclidean distances" in out and "similarity" not in out
