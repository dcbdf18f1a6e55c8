"""/v1/embeddings through the openai client and LangChain; batching of concurrent requests."""

import base64
import threading

import httpx
import numpy as np
import openai
import pytest

import lmlab

MODEL = "all-minilm-l6-v2"
WORDS = ["bank", "banks", "river", "money"]


@pytest.fixture(scope="module")
def reference():
    return lmlab.load_encoder(MODEL).encode(WORDS)


def test_vectors_equal_the_library_encoder(client, reference):
    r = client.embeddings.create(model=MODEL, input=WORDS)  # the client asks for base64
    got = np.array([d.embedding for d in r.data], dtype=np.float32)
    assert [d.index for d in r.data] == [0, 1, 2, 3]
    assert np.allclose(got, reference, atol=1e-6)
    assert r.usage.prompt_tokens == r.usage.total_tokens == 4


def test_float_and_base64_encodings_agree(server, reference):
    body = {"model": MODEL, "input": "bank"}
    answer = httpx.post(f"{server.url}/v1/embeddings", json=body).json()
    floats = answer["data"][0]["embedding"]
    assert answer["usage"] == {"prompt_tokens": 1, "total_tokens": 1}  # as OpenAI's, no more
    raw = httpx.post(
        f"{server.url}/v1/embeddings", json=body | {"encoding_format": "base64"}
    ).json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(raw), dtype=np.float32)
    assert np.allclose(floats, reference[0], atol=1e-6)
    assert np.array_equal(decoded, np.array(floats, dtype=np.float32))


def test_dimensions_cut_and_renormalize(client, reference):
    r = client.embeddings.create(model=MODEL, input=["bank"], dimensions=16)
    v = np.array(r.data[0].embedding)
    expected = reference[0, :16] / np.linalg.norm(reference[0, :16])
    assert v.shape == (16,) and np.allclose(v, expected, atol=1e-6)


def test_token_id_arrays_are_accepted(client):
    tok = lmlab.load_tokenizer(MODEL)
    ids = tok.encode("river bank")
    by_ids = client.embeddings.create(model=MODEL, input=[ids]).data[0].embedding
    by_text = client.embeddings.create(model=MODEL, input="river bank").data[0].embedding
    assert np.allclose(by_ids, by_text, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (dict(input=[]), "input"),
        (dict(input=""), "input"),
        (dict(input="x", dimensions=0), "dimensions"),
        (dict(input="x", dimensions=385), "dimensions"),
        (dict(input="x", encoding_format="hex"), "encoding_format"),
    ],
)
def test_bad_embedding_requests_are_400(server, kwargs, param):
    r = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL} | kwargs)
    assert r.status_code == 400
    assert r.json()["error"]["param"].startswith(param)


@pytest.mark.parametrize("inputs", [[[1] * 2000, [2924]], ["bank " * 1000, "bank"]])
def test_usage_counts_the_tokens_embedded_after_truncation(client, inputs):
    encoder = lmlab.load_encoder(MODEL)
    if isinstance(inputs[0], str):
        read = encoder.encode_with_stats(inputs)
    else:
        read = encoder.encode_token_ids(inputs)
    assert read.n_truncated == 1  # the long input is cut to the window, the short one is not
    r = client.embeddings.create(model=MODEL, input=inputs)
    assert r.usage.prompt_tokens == read.n_tokens - 2 * 2  # without each input's [CLS] [SEP]


def test_a_chat_model_is_not_an_embedding_model(client):
    with pytest.raises(openai.BadRequestError, match="not served as an embedding model"):
        client.embeddings.create(model="smollm2-135m-instruct", input="x")


def test_concurrent_requests_get_their_own_vectors(client, reference):
    got = [None] * 16

    def ask(i):
        word = WORDS[i % 4]
        got[i] = client.embeddings.create(model=MODEL, input=word).data[0].embedding

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, v in enumerate(got):
        assert np.allclose(v, reference[i % 4], atol=1e-5)


def test_langchain_openai_embeddings(server, reference):
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(
        base_url=f"{server.url}/v1",
        api_key="unused",
        model=MODEL,
        check_embedding_ctx_length=False,
    )
    assert np.allclose(emb.embed_query("bank"), reference[0], atol=1e-5)
    docs = emb.embed_documents(["river", "money"])
    assert np.allclose(docs, reference[2:], atol=1e-5)
