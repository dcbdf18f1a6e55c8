"""Encoders: the bundled MiniLM against sentence-transformers, the lecture's orderings,
dimensions, token vectors, static rows, pre-tokenized input and bad input."""

import numpy as np
import pytest

import lmlab
from lmlab.embed import load_encoder
from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path

SENTENCES = [
    "The man bites the dog.",
    "The dog bites the man.",
    "The dog is bitten by the man.",
    "A bank is a financial institution.",
    "We sat on the bank of the river.",
    "Economists measure inflation with price indices.",
    "Hello!",
    "",
    "  ",
    "naïve café résumé — 東京 😀",
    "word " * 400,  # longer than the 256-token window
]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(DEFAULT_ENCODER)


@pytest.fixture(scope="module")
def folder():
    return bundled_path(BUNDLED[DEFAULT_ENCODER])


@pytest.fixture(scope="module")
def reference(folder):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(folder), device="cpu")
    return model.encode(SENTENCES, batch_size=4, convert_to_numpy=True)


def test_default_backend_is_onnx_runtime(encoder):
    assert encoder.backend == "onnx"  # onnxruntime is a dependency; the export is cached


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_vectors_equal_sentence_transformers(folder, reference, backend):
    encoder = load_encoder(folder, backend=backend)
    assert encoder.backend == backend
    ours = encoder.encode(SENTENCES, batch_size=3)  # other batches: padding must not matter
    assert ours.dtype == np.float32 and ours.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    for i in range(1, len(SENTENCES)):  # one text alone: a batch with no padding at all
        np.testing.assert_allclose(encoder.encode(SENTENCES[i]), reference[i], atol=1e-5)


def test_lecture_orderings(encoder):
    s = lmlab.similarity(["bank", "banks", "river", "money"], model=encoder)
    bank, banks, river, money = range(4)
    assert s[bank, banks] > s[bank, money] > s[river, money]
    assert s[bank, banks] == pytest.approx(0.947, abs=0.005)
    assert s[bank, river] == pytest.approx(0.50, abs=0.01)
    e1, e2, e3 = encoder.encode(SENTENCES[:3])
    # "The dog bites the man" is closer to its passive paraphrase than "The man bites the dog"
    assert e2 @ e3 > e1 @ e3


def test_single_string_and_empty_list(encoder):
    v = encoder.encode("bank")
    assert v.shape == (384,)
    np.testing.assert_allclose(v, encoder.encode(["bank"])[0], atol=1e-6)
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.encode([], dimensions=8).shape == (0, 8)


def test_empty_string_is_the_pooled_cls_sep_vector(encoder):
    empty = encoder.encode("")
    assert np.linalg.norm(empty) == pytest.approx(1, abs=1e-5)
    framed = encoder.encode_token_ids([[]]).vectors[0]  # [CLS] [SEP] with nothing between
    np.testing.assert_allclose(empty, framed, atol=1e-6)


def test_dimensions_truncate_and_renormalize(encoder):
    full = encoder.encode(SENTENCES[:4])
    short = encoder.encode(SENTENCES[:4], dimensions=64)
    assert short.shape == (4, 64)
    np.testing.assert_allclose(np.linalg.norm(short, axis=1), 1, atol=1e-6)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)
    raw = encoder.encode(SENTENCES[:2], normalize_embeddings=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)


@pytest.mark.parametrize("dimensions", [0, -3, 385])
def test_bad_dimensions(encoder, dimensions):
    with pytest.raises(LmlabError, match="dimensions must be between 1 and 384"):
        encoder.encode("x", dimensions=dimensions)


def test_long_texts_are_truncated_and_counted(encoder):
    out = encoder.encode_with_stats(["short text", "word " * 400, "more " * 300])
    assert out.n_truncated == 2
    assert out.n_tokens == 4 + 256 + 256  # [CLS] short text [SEP], then two full windows
    ids = encoder.tokenizer.encode("word " * 400)
    via_ids = encoder.encode_token_ids([ids])
    assert via_ids.n_truncated == 1
    np.testing.assert_allclose(via_ids.vectors[0], out.vectors[1], atol=1e-6)


def test_token_ids_match_texts(encoder):
    ids = [encoder.tokenizer.encode(t) for t in SENTENCES[:5]]
    np.testing.assert_allclose(
        encoder.encode_token_ids(ids).vectors, encoder.encode(SENTENCES[:5]), atol=1e-6
    )


def test_embed_tokens_drops_special_tokens(encoder):
    t = lmlab.embed_tokens("the river bank", encoder)
    assert t.tokens == ["the", "river", "bank"] and t.vectors.shape == (3, 384)
    money = lmlab.embed_tokens("the money bank", encoder)
    # the same word in two contexts: two different contextual vectors, both still close
    cos = (
        t.vectors[2]
        @ money.vectors[2]
        / np.linalg.norm(t.vectors[2])
        / np.linalg.norm(money.vectors[2])
    )
    assert 0.5 < cos < 0.999


def test_pooling_choices_and_layers(folder):
    cls = load_encoder(folder, pooling="cls")
    mx = load_encoder(folder, pooling="max")
    first = load_encoder(folder, layer=0)
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    ids = torch.tensor([cls.tokenizer.encode("The man bites the dog.", add_special_tokens=True)])
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
    last, embedding_out = out.last_hidden_state[0].numpy(), out.hidden_states[0][0].numpy()

    def unit(v):
        return v / np.linalg.norm(v)

    text = "The man bites the dog."
    np.testing.assert_allclose(cls.encode(text), unit(last[0]), atol=1e-5)
    np.testing.assert_allclose(mx.encode(text), unit(last.max(0)), atol=1e-5)
    np.testing.assert_allclose(first.encode(text), unit(embedding_out.mean(0)), atol=1e-5)
    with pytest.raises(LmlabError, match="pooling"):
        load_encoder(folder, pooling="median")


def test_static_rows_are_the_input_embedding_matrix(folder):
    static = load_encoder(folder, static=True)
    assert static.matrix.shape == (30522, 384)
    ids = static.tokenizer.encode("river bank")
    expected = static.matrix[ids].mean(0)
    np.testing.assert_allclose(
        static.encode("river bank", normalize_embeddings=False), expected, rtol=1e-6, atol=1e-7
    )
    # static rows do not depend on context: "bank" alone is its own row
    np.testing.assert_allclose(
        static.encode("bank", normalize_embeddings=False), static.matrix[ids[1]], atol=1e-7
    )
    assert np.all(static.encode("", normalize_embeddings=False) == 0)


def test_bad_specs():
    with pytest.raises(LmlabError, match="unknown model"):
        load_encoder("no-such-encoder")
    with pytest.raises(LmlabError, match="static=True"):
        load_encoder("smollm2-135m-instruct")
    with pytest.raises(LmlabError, match="strings"):
        lmlab.encode([1, 2])


def test_int8_backend_stays_close(folder, reference):
    int8 = load_encoder(folder, backend="int8")
    assert int8.backend == "int8"
    cos = (int8.encode(SENTENCES) * reference).sum(1)
    assert cos.min() > 0.99 and cos.mean() > 0.995
    assert not np.allclose(cos, 1, atol=1e-4)  # it really runs the quantized weights
