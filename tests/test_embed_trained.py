"""Encoders from runs of `lmlab train`: mean-pooled hidden states, batched like one at a time."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import lmlab
from lmlab.embed.index import VectorIndex
from lmlab.embed.trained import TrainedEncoder
from lmlab.lm.neural.run import load_masked_lm
from lmlab.training import TrainConfig, train

TEXT = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n" * 40
OPTIONS = {  # tiny shapes: the output size differs from kind to kind
    "bert": dict(context=16, n_layer=1, n_head=2, n_embd=16, dropout=0.0),
    "gpt": dict(context=16, n_layer=1, n_head=2, n_embd=16),
    "lstm": dict(context=16, n_layer=2, n_embd=12),
    "gru": dict(context=16, n_layer=1, n_embd=12),
    "rnn": dict(context=16, n_layer=1, n_embd=12),
    "mlp": dict(context=3, n_embd=8, n_hidden=20, direct=True, block=16),
}
TEXTS = ["the fox", "a stitch in time saves nine. the quick brown fox", "", "dog"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT)
    config = TrainConfig(steps=3, batch_size=4, warmup=1, eval_every=3, device="cpu")
    for kind, options in OPTIONS.items():
        vocab = {"vocab_size": 60} if kind == "bert" else {}
        train(kind, [corpus], root / kind, model_options=options, config=config,
              progress=False, **vocab)  # fmt: skip
    return root


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_a_run_is_an_encoder_whose_batches_equal_single_texts(runs, kind):
    encoder = lmlab.load_encoder(runs / kind)
    assert isinstance(encoder, TrainedEncoder)
    expected_d = OPTIONS[kind].get("n_hidden", OPTIONS[kind]["n_embd"])
    batch = encoder.encode(TEXTS, batch_size=3)  # mixed lengths: padding inside batches
    assert batch.shape == (len(TEXTS), expected_d) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    for text, row in zip(TEXTS, batch, strict=True):
        np.testing.assert_allclose(encoder.encode(text), row, atol=1e-5)
    assert not np.allclose(batch[0], batch[1], atol=1e-3)  # different texts, different vectors


@pytest.mark.parametrize("kind", ["gpt", "lstm", "mlp"])
def test_causal_vector_is_the_mean_of_the_states_the_output_layer_reads(runs, kind):
    encoder = lmlab.load_encoder(runs / kind)
    lm = lmlab.load_lm(runs / kind)
    eos = min(lm.tokenizer.eos_ids)
    ids = torch.tensor([[eos, *lm.tokenizer.encode("the lazy dog")]])
    with torch.no_grad():
        states = lm.model.hidden_states(ids)
        if kind != "mlp":  # the output layer reads exactly these vectors
            head = lm.model.lm_head(states)
            torch.testing.assert_close(head, lm.model(ids), atol=1e-5, rtol=1e-5)
    mean = states[0].mean(0).numpy()
    raw = encoder.encode("the lazy dog", normalize_embeddings=False)
    np.testing.assert_allclose(raw, mean, atol=1e-5)


def test_bert_vectors_are_the_masked_lm_encode(runs):
    encoder = lmlab.load_encoder(runs / "bert")
    mlm = load_masked_lm(runs / "bert")
    for text in TEXTS[:2]:
        reference = mlm.encode([text])[0]
        raw = encoder.encode(text, normalize_embeddings=False)
        np.testing.assert_allclose(raw, reference, atol=1e-5)


def test_texts_longer_than_the_context_are_cut_and_counted(runs):
    encoder = lmlab.load_encoder(runs / "gpt")
    long = "the quick brown fox jumps over the lazy dog " * 3  # 132 characters > 16
    result = encoder.encode_with_stats([long, "fox"])
    assert result.n_truncated == 1
    cut = encoder.tokenizer.decode(encoder.tokenizer.encode(long)[:15])  # 15 after end-of-text
    np.testing.assert_allclose(result.vectors[0], encoder.encode(cut), atol=1e-5)
    assert lmlab.load_encoder(runs / "lstm").encode_with_stats([long]).n_truncated == 0


def test_search_and_cli_work_on_a_run(runs, tmp_path):
    index = VectorIndex(runs / "gru").add(TEXTS[:2] + TEXTS[3:])
    index.save(tmp_path / "idx")
    hits = VectorIndex.load(tmp_path / "idx").search("the fox", k=1)
    assert hits[0].text == "the fox"  # a text is its own nearest neighbour
    texts = tmp_path / "texts.txt"
    texts.write_text("the fox\nthe dog\n")
    out = tmp_path / "v.npy"
    done = subprocess.run(
        [sys.executable, "-m", "lmlab", "embed", str(texts), "--out", str(out),
         "--model", str(runs / "bert"), "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["dimension"] == 16
    np.testing.assert_allclose(
        np.load(out), lmlab.load_encoder(runs / "bert").encode(["the fox", "the dog"]), atol=1e-5
    )
