"""Every deprecated public name still works for one release: it warns (DeprecationWarning, at
the caller's line) and gives the same result as its replacement."""

from __future__ import annotations

import copy
import math
import pickle
import warnings

import numpy as np
import pytest

import lmlab
from lmlab.deprecation import renamed_kwargs
from lmlab.lm.ngram.model import NgramLM

SENTENCES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "train.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


@pytest.fixture(scope="module")
def ngram_dir(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ngram") / "lm"
    NgramLM.train([corpus], order=2, smoothing="mle").save(folder)
    return folder


@pytest.fixture(scope="module")
def bow(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bow") / "bow"
    return lmlab.BagOfWordsEncoder.fit(SENTENCES).save(folder)


def new_and_old(new, old):
    """(new(), old()) where new must not warn and old must warn once, from this file."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        expected = new()
    with pytest.warns(DeprecationWarning, match="deprecated") as caught:
        got = old()
    assert [w.filename for w in caught if w.category is DeprecationWarning] == [__file__]
    return expected, got


def test_renamed_kwargs_refuses_both_names():
    @renamed_kwargs(encoder="model")
    def f(*, model=None):
        return model

    with pytest.raises(TypeError, match="both encoder= and model="):
        f(encoder=1, model=2)


def test_vector_index_encoder_is_model(bow):
    texts = ["the cat sat", "a dog and a log"]
    new, old = new_and_old(
        lambda: lmlab.VectorIndex(model=bow).add(texts).search("cat", 1),
        lambda: lmlab.VectorIndex(encoder=bow).add(texts).search("cat", 1),
    )
    assert new == old and new[0].text == "the cat sat"


def test_vector_index_load_encoder_is_model(bow, tmp_path):
    lmlab.VectorIndex(bow).add(["the cat sat", "a dog"]).save(tmp_path / "idx")
    new, old = new_and_old(
        lambda: lmlab.VectorIndex.load(tmp_path / "idx", model=bow).search("dog", 2),
        lambda: lmlab.VectorIndex.load(tmp_path / "idx", encoder=bow).search("dog", 2),
    )
    assert new == old and new[0].text == "a dog"


def test_load_encoder_spec_is_model(bow):
    new, old = new_and_old(
        lambda: lmlab.load_encoder(model=bow).encode(["the cat"]),
        lambda: lmlab.load_encoder(spec=bow).encode(["the cat"]),
    )
    np.testing.assert_array_equal(new, old)


def test_load_lm_spec_is_model(ngram_dir):
    new, old = new_and_old(
        lambda: lmlab.load_lm(model=ngram_dir).prob("sat", ["cat"]),
        lambda: lmlab.load_lm(spec=ngram_dir).prob("sat", ["cat"]),
    )
    assert new == old == pytest.approx(0.5)  # cat sat, cat and


def test_load_tokenizer_spec_is_model(ngram_dir):
    new, old = new_and_old(
        lambda: lmlab.load_tokenizer(model=ngram_dir).encode("the cat"),
        lambda: lmlab.load_tokenizer(spec=ngram_dir).encode("the cat"),
    )
    assert new == old and len(new) == 2


def test_ngram_show_progress_is_progress(corpus):
    new, old = new_and_old(
        lambda: NgramLM.train([corpus], order=2, smoothing="mle", progress=True).prob(
            "sat", ["cat"]
        ),
        lambda: NgramLM.train([corpus], order=2, smoothing="mle", show_progress=True).prob(
            "sat", ["cat"]
        ),
    )
    assert new == old == pytest.approx(0.5)  # cat sat, cat and


def test_perplexity_returns_the_perplexity_and_score_the_score(tmp_path):
    from mock_lm import BigramLM

    lm, text = BigramLM(), "hello there, general kenobi"
    path = tmp_path / "t.txt"
    path.write_text(text)
    expected = lmlab.score(lm, text)
    assert math.isclose(expected.perplexity, math.exp(-sum(expected.logprobs) / 26))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for given in (text, path, str(path)):  # a text, a Path, a str naming a file
            ppl = lmlab.perplexity(lm, given)
            assert type(float(ppl)) is float and ppl == pytest.approx(expected.perplexity)
        assert lmlab.score(lm, path).logprobs == expected.logprobs  # score reads a Path too
        assert copy.deepcopy(ppl) == ppl and pickle.loads(pickle.dumps(ppl)) == ppl
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ppl.nonsense  # noqa: B018


@pytest.mark.parametrize("name", ["perplexity", "logprobs", "tokens", "nll", "to_dict"])
def test_perplexity_still_answers_the_score_attributes(name):
    from mock_lm import BigramLM

    lm, text = BigramLM(), "hello there"
    new, old = new_and_old(
        lambda: getattr(lmlab.score(lm, text), name),
        lambda: getattr(lmlab.perplexity(lm, text), name),
    )
    assert (new() == old()) if callable(new) else (new == old)


def _texts(chunks) -> list[str]:
    return [c.text for c in chunks]


def test_generate_stream_true_is_generate_stream():
    from mock_lm import BigramLM

    options = dict(temperature=0.9, seed=3, max_tokens=20, ignore_eos=True)
    new, old = new_and_old(
        lambda: _texts(lmlab.generate_stream(BigramLM(), "x", **options)),
        lambda: _texts(lmlab.generate(BigramLM(), "x", stream=True, **options)),
    )
    assert new == old and "".join(new) == lmlab.generate(BigramLM(), "x", **options).text


def test_chat_stream_true_is_chat_stream():
    from mock_lm import BigramLM

    messages = [{"role": "user", "content": "hi"}]
    options = dict(temperature=0.9, seed=3, max_tokens=20, ignore_eos=True)
    new, old = new_and_old(
        lambda: _texts(lmlab.chat_stream(BigramLM(), messages, **options)),
        lambda: _texts(lmlab.chat(BigramLM(), messages, stream=True, **options)),
    )
    assert new == old and "".join(new) == lmlab.chat(BigramLM(), messages, **options).text


def test_encode_normalize_is_normalize_embeddings(bow):
    encoder, texts = lmlab.load_encoder(bow), ["the cat sat on the mat", "a dog"]
    for new_call, old_call in [
        (
            lambda: encoder.encode(texts, normalize_embeddings=False),
            lambda: encoder.encode(texts, normalize=False),
        ),
        (
            lambda: encoder.encode_with_stats(texts, normalize_embeddings=False).vectors,
            lambda: encoder.encode_with_stats(texts, normalize=False).vectors,
        ),
        (
            lambda: lmlab.encode(texts, encoder, normalize_embeddings=False),
            lambda: lmlab.encode(texts, encoder, normalize=False),
        ),
    ]:
        new, old = new_and_old(new_call, old_call)
        np.testing.assert_array_equal(new, old)
        assert new[0].sum() == 6  # raw counts: not normalized


def test_the_warning_names_the_call_and_its_replacement(bow):
    with pytest.warns(DeprecationWarning) as caught:
        lmlab.VectorIndex(encoder=bow)
    assert str(caught[0].message) == (
        "VectorIndex(encoder=...) is deprecated and will be removed in lmlab 0.3: use model="
    )
