"""Embedding files: every input format, ids kept, resuming, float16, bad input loses nothing."""

import json

import numpy as np
import pytest

import lmlab
from lmlab.embed.batch import embed_file, read_embeddings, read_texts
from lmlab.errors import LmlabError

TEXTS = ["The cat sat.", "Stocks fell.", "A long sentence about the weather today.", "Hi"]


@pytest.fixture(scope="module")
def encoder():
    return lmlab.load_encoder()


def test_formats_give_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("\n".join([TEXTS[0], "", *TEXTS[1:]]) + "\n")
    with open(tmp_path / "a.csv", "w") as f:
        f.write("id,body\n" + "".join(f'x{i},"{t}"\n' for i, t in enumerate(TEXTS)))
    (tmp_path / "a.jsonl").write_text(
        "".join(json.dumps({"id": f"x{i}", "body": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    pq.write_table(
        pa.table({"id": [f"x{i}" for i in range(4)], "body": TEXTS}), tmp_path / "a.parquet"
    )
    assert read_texts(tmp_path / "a.txt") == [("1", TEXTS[0])] + [
        (str(i + 3), t)
        for i, t in enumerate(TEXTS[1:])  # line numbers: the blank line 2 skipped
    ]
    expected = [(f"x{i}", t) for i, t in enumerate(TEXTS)]
    for name in ("a.csv", "a.jsonl", "a.parquet"):
        assert read_texts(tmp_path / name, "body") == expected
    with pytest.raises(LmlabError, match="no column 'text'"):
        read_texts(tmp_path / "a.csv")


def test_embed_file_npy_and_parquet(encoder, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n" + "".join(f'r{i},"{t}"\n' for i, t in enumerate(TEXTS)))
    expected = encoder.encode(TEXTS)
    report = embed_file(src, tmp_path / "out.npy", model=encoder, progress=False, chunk_size=3)
    assert (report.count, report.dimension) == (4, 384)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)
    assert json.loads((tmp_path / "out.ids.json").read_text()) == ["r0", "r1", "r2", "r3"]
    embed_file(src, tmp_path / "out.parquet", model=encoder, progress=False, dtype="float16")
    ids, texts, vectors = read_embeddings(tmp_path / "out.parquet")
    assert ids == ["r0", "r1", "r2", "r3"] and texts == TEXTS
    np.testing.assert_allclose(vectors, expected, atol=1e-3)  # float16 keeps ~3 digits
    assert not list(tmp_path.glob(".*"))  # no partial folder or temporary file left


def test_interrupted_run_resumes(encoder, tmp_path, monkeypatch):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS * 3))
    calls = []
    original = type(encoder).encode_with_stats

    def failing(self, texts, **kw):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third chunk
        return original(self, texts, **kw)

    monkeypatch.setattr(type(encoder), "encode_with_stats", failing)
    with pytest.raises(KeyboardInterrupt):
        embed_file(src, tmp_path / "out.npy", model=encoder, chunk_size=4, progress=False)
    assert not (tmp_path / "out.npy").exists()
    monkeypatch.setattr(type(encoder), "encode_with_stats", original)
    report = embed_file(src, tmp_path / "out.npy", model=encoder, chunk_size=4, progress=False)
    assert report.resumed_chunks == 2 and report.count == 12
    # the counts are the whole file's, not only the chunk embedded by this run
    assert report.n_tokens == encoder.encode_with_stats(TEXTS * 3).n_tokens
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), encoder.encode(TEXTS * 3), atol=1e-6)


def test_bad_input_writes_nothing(encoder, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a\nb\n")
    with pytest.raises(LmlabError, match="dimensions"):
        embed_file(src, tmp_path / "o.npy", model=encoder, dimensions=999, progress=False)
    with pytest.raises(LmlabError, match=r"\.npy or \.parquet"):
        embed_file(src, tmp_path / "o.csv", model=encoder, progress=False)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(LmlabError, match="no text"):
        embed_file(tmp_path / "empty.txt", tmp_path / "o.npy", model=encoder, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "in.txt"]


def test_input_is_read_chunk_by_chunk(encoder, tmp_path, monkeypatch):
    # Line 9 is broken: reading the whole file first would fail there before any embedding.
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"text": t}) for t in TEXTS * 2] + ["{broken"]
    src.write_text("\n".join(lines) + "\n")
    seen = []
    original = type(encoder).encode_with_stats

    def interrupted(self, texts, **kw):
        seen.append(list(texts))
        if len(seen) == 2:
            raise KeyboardInterrupt
        return original(self, texts, **kw)

    monkeypatch.setattr(type(encoder), "encode_with_stats", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_file(src, tmp_path / "out.npy", model=encoder, chunk_size=4, progress=False)
    assert seen == [TEXTS, TEXTS]
    monkeypatch.setattr(type(encoder), "encode_with_stats", original)
    with pytest.raises(LmlabError, match="line 9 is not valid JSON"):
        embed_file(src, tmp_path / "out.npy", model=encoder, chunk_size=4, progress=False)
    assert not (tmp_path / "out.npy").exists()


def test_parquet_row_groups_resume_into_parquet(encoder, tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 5)]  # 20 distinct texts
    table = pa.table({"id": [f"d{i}" for i in range(20)], "text": texts})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=6)  # 4 row groups
    assert pq.ParquetFile(tmp_path / "in.parquet").num_row_groups == 4
    calls = []
    original = type(encoder).encode_with_stats

    def failing(self, batch, **kw):
        calls.append(len(batch))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, batch, **kw)

    monkeypatch.setattr(type(encoder), "encode_with_stats", failing)
    out = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed_file(tmp_path / "in.parquet", out, model=encoder, chunk_size=5, progress=False)
    assert not out.exists()
    monkeypatch.setattr(type(encoder), "encode_with_stats", original)
    report = embed_file(tmp_path / "in.parquet", out, model=encoder, chunk_size=5, progress=False)
    assert (report.resumed_chunks, report.count) == (3, 20)
    ids, got_texts, vectors = read_embeddings(out)
    assert ids == [f"d{i}" for i in range(20)] and got_texts == texts
    np.testing.assert_allclose(vectors, encoder.encode(texts), atol=1e-6)
    assert pq.ParquetFile(out).num_row_groups == 4  # written one chunk at a time
