"""JSON-object mode: the automaton accepts exactly JSON-object prefixes, and decoding obeys it."""

import json

import pytest
import torch
from mock_lm import BigramLM

from lmlab import generate
from lmlab.json_mode import JsonObjectPrefix

VALID = [
    "{}",
    '{"a": 1}',
    ' {"a": [1, 2.5, -3e+2, 0, true, false, null, "x\\n\\u00e9\\""], "b": {"c": {}}}\n',
    '{"k":{"n":[[],[{}]]}}',
]
INVALID = [
    "[1]",
    '{"a" 1}',
    '{"a": 01}',
    '{"a": tru}',
    "{,}",
    '{"a": 1,}',
    '{"a": "\n"}',
    '{"a": 1}}',
    '{"a": -}',
    '{"a": [1,]}',
    "x",
    '{"a": 1.}',
    '{"a": "\\x"}',
    '{"a": 1e}',
]


@pytest.mark.parametrize("text", VALID)
def test_valid_objects_and_all_their_prefixes_are_accepted(text):
    assert json.loads(text) is not None
    closed_at = len(text.rstrip())  # the object is complete once its last brace is read
    for i in range(len(text)):
        state = JsonObjectPrefix()
        assert state.feed_text(text[:i])
        assert state.complete == (i >= closed_at)
    state = JsonObjectPrefix()
    assert state.feed_text(text) and state.complete


@pytest.mark.parametrize("text", INVALID)
def test_invalid_texts_are_refused(text):
    state = JsonObjectPrefix()
    assert not (state.feed_text(text) and state.complete)


def test_decoding_yields_valid_json_from_a_model_that_babbles():
    lm = BigramLM(torch.randn(257, 257, generator=torch.Generator().manual_seed(1)))
    for seed in range(5):
        out = generate(lm, "x", temperature=1.0, seed=seed, max_tokens=400, json_object=True)
        if out.finish_reason == "stop":
            assert isinstance(json.loads(out.text), dict)
        else:  # cut by max_tokens: still a valid prefix
            assert JsonObjectPrefix().feed_text(out.text)


def test_greedy_json_from_the_chat_model(llama_lm):
    import lmlab

    messages = [
        {"role": "system", "content": "You answer in JSON."},
        {"role": "user", "content": 'What is the capital of France? Answer as {"capital": ...}.'},
    ]
    out = lmlab.chat(llama_lm, messages, temperature=0, json_object=True, max_tokens=300)
    assert out.finish_reason == "stop"
    assert "capital" in json.loads(out.text)
