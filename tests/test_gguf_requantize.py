"""The bundled chat model runs on llama.cpp from a Q8_0 copy made once in the cache."""

import os

import pytest
from gguf import GGMLQuantizationType, GGUFReader

import lmlab
from lmlab.errors import LmlabError
from lmlab.home import lmlab_home
from lmlab.lm import gguf_requantize
from lmlab.models import DEFAULT_LM, llama_file, load_lm, resolve

TEXT = (
    "The city of Paris is the capital of France. It lies on the river Seine, and millions of "
    "people visit its museums, churches and gardens every year."
)


def test_the_bundled_model_runs_from_its_q8_0_copy(gguf_path):
    copy = llama_file(resolve(DEFAULT_LM))
    assert copy.parent == lmlab_home() / "gguf" and copy.name.endswith(".Q8_0.gguf")
    types = {t.tensor_type for t in GGUFReader(copy).tensors if len(t.shape) > 1}
    assert GGMLQuantizationType.Q8_0 in types and GGMLQuantizationType.Q4_1 not in types
    made = copy.stat().st_mtime_ns
    assert llama_file(resolve(DEFAULT_LM)) == copy and copy.stat().st_mtime_ns == made  # once
    # a path is run as it is: only the bundled name maps to the copy
    assert llama_file(resolve(str(gguf_path))) == gguf_path


def test_the_copy_scores_text_like_the_original(gguf_path):
    copy = load_lm(DEFAULT_LM, backend="llama")
    original = load_lm(gguf_path, backend="llama")
    assert copy.name == DEFAULT_LM
    a, b = lmlab.score(copy, TEXT), lmlab.score(original, TEXT)
    assert a.token_ids == b.token_ids
    assert a.perplexity == pytest.approx(b.perplexity, rel=0.02)


def test_a_failed_requantization_leaves_no_file(gguf_path, tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_HOME", str(tmp_path))
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "llama_model_quantize", lambda *args: 1)
    with pytest.raises(LmlabError, match="could not re-quantize"):
        gguf_requantize.requantized(gguf_path, "Q8_0")
    assert os.listdir(tmp_path / "gguf") == []  # no half-written copy, no temporary file
    with pytest.raises(LmlabError, match="no weight type"):
        gguf_requantize.requantized(gguf_path, "Q9_9")


def test_an_unwritable_cache_runs_the_original_file(gguf_path, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.write_text("a file where the cache folder should be")
    monkeypatch.setenv("LMLAB_HOME", str(home))
    assert llama_file(resolve(DEFAULT_LM)) == gguf_path
    assert "could not be made" in capsys.readouterr().err
