"""The one-time GGUF conversion: complete or absent, and rebuilt when damaged."""

import shutil

import pytest

import lmlab
from lmlab.home import atomic_dir
from lmlab.lm.gguf_cache import cache_folder, is_complete


def test_atomic_dir_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "whole.bin").write_bytes(b"y")
    assert (target / "whole.bin").read_bytes() == b"y"


@pytest.mark.slow
def test_a_damaged_cache_is_rebuilt(torch_lm, gguf_path, tmp_path, monkeypatch):
    """Truncated weights in the cache: the next load converts again instead of failing."""
    home = tmp_path / "home"
    folder = cache_folder(gguf_path)
    monkeypatch.setenv("LMLAB_HOME", str(home))
    damaged = cache_folder(gguf_path)
    shutil.copytree(folder, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    lm = lmlab.load_lm(gguf_path, backend="torch")
    assert is_complete(damaged)
    assert weights.stat().st_size == (folder / "model.safetensors").stat().st_size
    assert lmlab.generate(lm, "The capital of France is", temperature=0, max_tokens=3).text


def test_a_bad_option_is_an_error_not_a_rebuild(torch_lm, gguf_path, monkeypatch):
    """A user's mistake (an unknown dtype) must not be taken for a damaged cache."""
    from lmlab.lm import gguf_cache

    rebuilds = []
    real = gguf_cache.converted_folder
    monkeypatch.setattr(
        gguf_cache, "converted_folder", lambda p, rebuild=False: rebuilds.append(rebuild) or real(p)
    )
    with pytest.raises(lmlab.LmlabError, match="dtype must be"):
        lmlab.load_lm(gguf_path, backend="torch", dtype="bogus")
    assert True not in rebuilds
