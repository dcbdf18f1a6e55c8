"""Atomic writes: complete or absent, and with the permissions a plain write would give."""

import os
import stat

import pytest

from lmlab.home import atomic_dir, atomic_file, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_get_the_usual_permissions(tmp_path, umask_022):
    atomic_write_text(tmp_path / "a.txt", "hello")
    with atomic_file(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"\0")
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "x").write_text("x")
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "b.bin") == 0o644
    assert _mode(tmp_path / "run") == 0o755  # not mkdtemp's 0700: others can read a shipped run


def test_a_failed_write_leaves_the_old_folder(tmp_path):
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "x").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "run") as tmp:
        (tmp / "x").write_text("new")
        raise RuntimeError
    assert (tmp_path / "run" / "x").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_files_a_writer_creates_0600_are_given_the_usual_permissions(tmp_path, umask_022):
    import numpy as np
    from safetensors.numpy import save_file  # creates its files 0600

    with atomic_file(tmp_path / "w.safetensors") as tmp:
        save_file({"w": np.zeros(2)}, str(tmp))
    with atomic_dir(tmp_path / "clf") as tmp:
        (tmp / "encoder").mkdir()
        save_file({"w": np.zeros(2)}, str(tmp / "encoder" / "model.safetensors"))
    assert _mode(tmp_path / "w.safetensors") == 0o644  # collaborators can load it
    assert _mode(tmp_path / "clf" / "encoder" / "model.safetensors") == 0o644


def test_an_output_replaces_only_an_earlier_output_of_its_kind(tmp_path):
    from lmlab.errors import LmlabError

    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("text")
    for target in (mine, corpus):  # a user's folder or file given as --out
        refused = pytest.raises(LmlabError, match="not an earlier output to replace")
        with refused, atomic_dir(target, replaces="lmlab.json") as tmp:
            (tmp / "lmlab.json").write_text("{}")
    assert (mine / "notes.txt").read_text() == "precious" and corpus.read_text() == "text"
    run = tmp_path / "run"
    for version in ("1", "2"):  # an earlier output is replaced
        with atomic_dir(run, replaces="lmlab.json") as tmp:
            (tmp / "lmlab.json").write_text(version)
    assert (run / "lmlab.json").read_text() == "2"


def test_remembered_sha256_follows_the_file(tmp_path, monkeypatch):
    import hashlib

    from lmlab.home import remembered_sha256

    monkeypatch.setenv("LMLAB_HOME", str(tmp_path / "home"))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"one")
    assert remembered_sha256(path) == hashlib.sha256(b"one").hexdigest()
    assert remembered_sha256(path) == hashlib.sha256(b"one").hexdigest()  # from the cache
    before = path.stat().st_mtime_ns
    path.write_bytes(b"two")  # same size and inode: the modification time tells (set apart
    os.utime(path, ns=(before + 10**9, before + 10**9))  # here: clock ticks are coarse)
    assert remembered_sha256(path) == hashlib.sha256(b"two").hexdigest()
    (tmp_path / "moved.bin").write_bytes(b"one")
    os.replace(tmp_path / "moved.bin", path)  # another file under the same name
    assert remembered_sha256(path) == hashlib.sha256(b"one").hexdigest()
