"""The fast embedding path: measured per machine, never a path whose vectors leave cosine 0.999
of float32; explicit bfloat16 and int8; the default stays float32-equal; bad input."""

import numpy as np
import pytest

import lmlab
from lmlab import measured
from lmlab.embed import fast
from lmlab.errors import LmlabError
from lmlab.measured import MEASURE_ENV
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path

TEXTS = fast.check_texts()


@pytest.fixture(scope="module")
def reference():
    """float32 vectors of the check set from torch, the reference every path is held to."""
    return lmlab.load_encoder(backend="torch").encode(TEXTS)


@pytest.fixture
def measuring(tmp_path, monkeypatch):
    """Measuring on, in a cache of the test's own (the ONNX export is linked from the session's
    cache so it is not made again)."""
    import os

    from lmlab.home import lmlab_home

    lmlab.load_encoder()  # the session cache holds the export
    (tmp_path / "onnx").symlink_to(lmlab_home() / "onnx")
    (tmp_path / "sha256").symlink_to(lmlab_home() / "sha256")
    monkeypatch.setenv("LMLAB_HOME", str(tmp_path))
    monkeypatch.setenv(MEASURE_ENV, "1")
    monkeypatch.setattr(measured, "_load_average", lambda: 0.25)  # kept, whatever the suite's load
    assert os.environ["LMLAB_HOME"] == str(tmp_path)
    return tmp_path


@pytest.fixture
def quick(measuring, monkeypatch):
    """Measuring on a few check texts, one round (the tests that fake the speeds)."""
    monkeypatch.setattr(fast, "check_texts", lambda: [*TEXTS[:6], max(TEXTS, key=len)])
    monkeypatch.setattr(fast, "ROUNDS", 1)


def fast_choice_kept() -> dict:
    """The fast path's measurement of the bundled encoder, as kept in the cache."""
    from lmlab.measured import choices

    folder = bundled_path(BUNDLED[DEFAULT_ENCODER])
    return choices()[fast.choice_names(folder)["fast encoder"]]


def least_cosine(a, b):
    return float((a * b).sum(axis=1).min())


def test_the_check_set_is_varied():
    lengths = sorted(len(t.split()) for t in TEXTS)
    assert len(TEXTS) >= 30 and len(set(TEXTS)) == len(TEXTS)
    assert lengths[0] == 1 and lengths[-1] > 100  # one word to a long paragraph


def test_a_candidate_that_fails_the_check_is_dropped_even_when_fastest(
    quick, monkeypatch, reference
):
    # "wrong" pools the second-to-last layer: other vectors, and (faked) the fastest path
    monkeypatch.setattr(fast, "PATHS", {"default": {}, "wrong": {"layer": -2}})
    monkeypatch.setattr(fast, "_seconds", lambda enc, texts: 0.01 if enc.layer == -2 else 1.0)
    enc = lmlab.load_encoder(fast=True)
    assert enc.layer == -1
    assert least_cosine(enc.encode(TEXTS), reference) > 1 - 1e-4
    choice = fast_choice_kept()
    assert choice["path"] == "default"
    assert choice["dropped"]["wrong"].startswith("cosine")
    assert choice["min_cosine"]["wrong"] < fast.CHECK_COSINE
    assert choice["texts_per_s"]["wrong"] > choice["texts_per_s"]["default"]


def test_a_faster_candidate_that_passes_is_taken(quick, monkeypatch):
    # a window of 255 tokens: the same vectors for every check text (all are shorter)
    monkeypatch.setattr(fast, "PATHS", {"default": {}, "window": {"max_length": 255}})
    monkeypatch.setattr(fast, "_seconds", lambda enc, texts: 0.01 if enc.max_length == 255 else 1)
    assert lmlab.load_encoder(fast=True).max_length == 255
    assert fast_choice_kept()["path"] == "window"
    assert lmlab.load_encoder().max_length == 256  # the default path is not the fast one


@pytest.mark.slow
def test_the_real_fast_path_keeps_the_check(measuring, reference):
    enc = lmlab.load_encoder(fast=True)
    choice = fast_choice_kept()
    assert choice["path"] in fast.PATHS and choice["measured"]
    assert least_cosine(enc.encode(TEXTS), reference) >= fast.CHECK_COSINE
    for path, cosine in choice["min_cosine"].items():
        assert path == choice["path"] or path in choice["dropped"] or cosine >= fast.CHECK_COSINE
    default = lmlab.load_encoder()  # the default path: float32-equal, whichever runtime won
    assert default.backend in ("onnx", "torch")
    assert least_cosine(default.encode(TEXTS), reference) > 1 - 1e-4


def test_bfloat16_is_an_explicit_choice(reference):
    enc = lmlab.load_encoder(dtype="bfloat16")
    assert (enc.backend, enc.dtype, fast.describe(enc)) == ("torch", "bfloat16", "torch bfloat16")
    vectors = enc.encode(TEXTS[:16])  # bfloat16 is slow on CPUs without its products: a few
    assert vectors.dtype == np.float32
    assert fast.CHECK_COSINE <= least_cosine(vectors, reference[:16]) < 1 - 1e-6


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "float16"}, "dtype must be one of float32, bfloat16"),
        ({"backend": "int4"}, "backend must be one of auto, onnx, int8, torch"),
        ({"dtype": "bfloat16", "backend": "onnx"}, "dtype bfloat16 runs in torch"),
        ({"fast": True, "backend": "int8"}, "fast=True chooses the backend and dtype"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(LmlabError, match=message) as e:
        lmlab.load_encoder(**options)
    assert "\n" not in str(e.value)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from lmlab.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_embed_fast_through_the_command_line(tmp_path, capsys, monkeypatch, reference):
    # as if bfloat16 had been measured fastest here: its vectors are close, not equal
    monkeypatch.setattr(fast, "fast_choice", lambda folder: {"path": "bfloat16"})
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:16]) + "\n")
    code, _, err = run_cli(capsys, "embed", str(texts), "--out", str(tmp_path / "v.npy"), "--fast")
    assert code == 0, err
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (16, 384)
    assert fast.CHECK_COSINE <= least_cosine(vectors, reference[:16]) < 1 - 1e-6
    code, _, err = run_cli(
        capsys, "embed", str(texts), "--out", str(tmp_path / "w.npy"), "--backend", "nope"
    )
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
