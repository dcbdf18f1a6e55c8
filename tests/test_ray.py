"""`--ray` and lmlab.ray on a local Ray runtime: the same results as one process, an actor
killed mid-run, and one-line errors (issue 34). The two-node cluster: test_ray_cluster.py."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from classify_data import corpus

import lmlab
from lmlab.cli import main
from lmlab.embed.batch import embed_file, read_embeddings
from lmlab.errors import LmlabError

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a Ray runtime takes 10-30 s to start on 2 shared cores

SRC = str(Path(lmlab.__file__).resolve().parents[1])


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def texts_file(path: Path, n: int = 300) -> Path:
    """n lines, every 11th blank (skipped, yet counted in the ids: they are line numbers)."""
    lines = [
        "" if i % 11 == 0 else f"Sentence {i} is about " + "river banks " * (i % 9)
        for i in range(1, n + 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def session():
    """One local Ray runtime (2 CPUs, no dashboard) for the module, shut down after it."""
    import ray.cloudpickle
    import ray_workers

    ray.cloudpickle.register_pickle_by_value(ray_workers)
    os.environ["PYTHONPATH"] = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    with lmlab.ray.ray_session(num_cpus=2):
        yield ray


def test_embed_with_ray_equals_the_single_process_path(session, tmp_path, capsys):
    data = texts_file(tmp_path / "texts.txt")
    embed_file(data, tmp_path / "plain.parquet", progress=False)
    ids, texts, vectors = read_embeddings(tmp_path / "plain.parquet")
    out = tmp_path / "vectors"
    code, stdout, err = run(capsys, "embed", data, "--out", out, "--ray", "--workers", "2")
    assert code == 0, err
    assert f"wrote {len(ids)} vectors" in stdout
    table = lmlab.ray.read_parquet_folder(out)
    assert [str(i) for i in table["id"].to_pylist()] == ids  # line numbers, blank lines skipped
    assert table["text"].to_pylist() == texts
    got = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert got.shape == vectors.shape and np.abs(got - vectors).max() <= 1e-6
    # the files, read in name order, are already in the input's order
    names = sorted(p.name for p in out.iterdir())
    assert all(n.endswith(".parquet") for n in names)
    assert pq.read_table(out)["id"].to_pylist() == table["id"].to_pylist()


def test_a_worker_killed_mid_run_leaves_every_row_once(session, tmp_path):
    from ray_workers import DyingOnceEmbedWorker

    data = texts_file(tmp_path / "texts.txt", 200)
    marker = tmp_path / "died"
    ds = lmlab.ray.read_input(str(data), session, block_rows=20)
    args = (str(marker), "all-minilm-l6-v2", "text", 32, None, "float32", "auto", False)
    mapped = lmlab.ray.map_with_pool(ds, DyingOnceEmbedWorker, args, 2, 1)
    rows = lmlab.ray.write_parquet(mapped, tmp_path / "out")
    assert marker.exists()  # an actor did die
    ids = lmlab.ray.read_parquet_folder(tmp_path / "out")["id"].to_pylist()
    expected = [i for i in range(1, 201) if i % 11 != 0]
    assert rows == len(expected) and ids == expected  # every row, once, in order


def test_classify_predict_with_ray_equals_the_single_process_path(session, tmp_path, capsys):
    def table(path, texts, labels):
        lines = ["id,text,label"] + [
            f"d{i},{t},{lb}" for i, (t, lb) in enumerate(zip(texts, labels, strict=True))
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    train = table(tmp_path / "train.csv", *corpus(120))
    test = table(tmp_path / "test.csv", *corpus(60, 1))
    clf = tmp_path / "clf"
    assert run(capsys, "classify", "fit", train, "--encoder", "bow", "--out", clf)[0] == 0
    code, _, err = run(capsys, "classify", "predict", clf, test, "--out", tmp_path / "p.csv")
    assert code == 0, err
    code, _, err = run(capsys, "classify", "predict", clf, test, "--out", tmp_path / "p", "--ray")
    assert code == 0, err
    import csv

    plain = list(csv.DictReader((tmp_path / "p.csv").open()))
    got = lmlab.ray.read_parquet_folder(tmp_path / "p").to_pylist()
    assert [r["id"] for r in got] == [r["id"] for r in plain]  # the input's own ids, kept
    assert [r["predicted"] for r in got] == [r["predicted"] for r in plain]
    for c in ("mid", "neg", "pos"):
        assert [r[f"p_{c}"] for r in got] == pytest.approx([float(r[f"p_{c}"]) for r in plain])
    assert all(r["label"] for r in got)  # every input column kept


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """An MLP language model trained for a few steps: fast to load, and greedy decoding of it
    is deterministic, so one process and Ray must give the same texts."""
    root = tmp_path_factory.mktemp("tiny_lm")
    corpus_file = root / "corpus.txt"
    corpus_file.write_text("the river bank is green and the money bank is grey\n" * 40)
    cmd = [sys.executable, "-m", "lmlab", "train", "mlp", str(corpus_file)]
    out = subprocess.run(
        [*cmd, "--out", str(root / "mlp"), "--steps", "5", "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return root / "mlp"


def test_score_per_line_and_generate_file_with_ray_equal_one_process(
    session, tiny_lm, tmp_path, capsys
):
    data = tmp_path / "lines.txt"
    data.write_text("the river bank\n\nthe money is green\na\nthe bank is grey and green\n")
    code, _, err = run(
        capsys, "score", data, "--per-line", "-m", tiny_lm, "--out", tmp_path / "s.jsonl"
    )
    assert code == 0, err
    plain = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    code, _, err = run(
        capsys, "score", data, "--per-line", "-m", tiny_lm, "--out", tmp_path / "s", "--ray"
    )
    assert code == 0, err
    got = lmlab.ray.read_parquet_folder(tmp_path / "s").to_pylist()
    assert [str(r["id"]) for r in got] == [r["id"] for r in plain] == ["1", "3", "4", "5"]
    for a, b in zip(got, plain, strict=True):
        assert a["tokens"] == b["tokens"] and a["logprob"] == pytest.approx(b["logprob"], abs=1e-5)
        assert math.isnan(a["perplexity"]) == (b["perplexity"] is None or b["tokens"] == 0)

    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "the river"}, {"prompt": "the money bank"}, {"prompt": "green"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = ["-m", tiny_lm, "--temperature", "0", "--max-tokens", "6"]
    code, _, err = run(
        capsys, "generate", "--file", prompts, "--out", tmp_path / "a.jsonl", *options
    )
    assert code == 0, err
    plain = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in plain] == [r["prompt"] for r in rows]
    assert all(r["completion"] for r in plain)  # the model does write something
    code, _, err = run(
        capsys, "generate", "--file", prompts, "--out", tmp_path / "a", "--ray", *options
    )
    assert code == 0, err
    got = lmlab.ray.read_parquet_folder(tmp_path / "a").to_pylist()
    assert [r["completion"] for r in got] == [r["completion"] for r in plain]


def test_bad_input_is_one_line_exit_2_and_leaves_no_output(session, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("id,body\n1,hello\n")
    out = tmp_path / "out"
    code, _, err = run(capsys, "embed", table, "--out", out, "--ray", "--column", "text")
    assert code == 2 and err.count("\n") == 1 and "has no column 'text'" in err
    with pytest.raises(LmlabError, match="has no column 'text'"):  # the library: Ray checks
        lmlab.ray.embed(str(table), column="text")
    code, _, err = run(capsys, "embed", "s3://no-such-bucket-lmlab/x.txt", "--out", out, "--ray")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: cannot open")
    code, _, err = run(capsys, "embed", tmp_path / "missing.txt", "--out", out, "--ray")
    assert code == 2 and "no such file" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_an_unreachable_address_fails_in_one_line_at_once(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = texts_file(tmp_path / "t.txt", 5)
    address = f"127.0.0.1:{port}"
    args = ("embed", data, "--out", tmp_path / "o", "--ray", "--ray-address", address)
    if ray.is_initialized():  # a session open in the process is used as it is: test the probe
        with pytest.raises(LmlabError, match="cannot reach the Ray cluster"):
            lmlab.ray.runtime._probe(address)
        return
    code, _, err = run(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and "cannot reach the Ray cluster" in err


def test_without_ray_the_cli_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    data = texts_file(tmp_path / "t.txt", 5)
    code, _, err = run(capsys, "embed", data, "--out", tmp_path / "o", "--ray")
    assert (
        code == 2
        and err == "error: --ray needs Ray, which is not installed: pip install 'lmlab[ray]'\n"
    )


def test_lmlab_imports_without_ray():
    code = "import sys; sys.modules['ray'] = None; import lmlab, lmlab.ray, lmlab.cli; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_ray_options_without_ray_or_without_out_are_one_line_errors(tmp_path, capsys):
    data = texts_file(tmp_path / "t.txt", 5)
    code, _, err = run(capsys, "embed", data, "--out", tmp_path / "o.npy", "--workers", "2")
    assert code == 2 and "need --ray" in err
    code, _, err = run(capsys, "score", data, "--per-line", "--ray")
    assert code == 2 and "give it with --out" in err
    code, _, err = run(capsys, "generate", "--file", data)
    assert code == 2 and "--file needs --out" in err
