"""One notion of default sampling per model: what a call that leaves sampling fields out gets,
where the model's recommendation is read from, and that the library, the CLI and the server
all apply it (issue 28)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from mock_lm import BigramLM

from lmlab.decode import chat, generate, generate_stream
from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, DEFAULT_LM, load_lm
from lmlab.sampling import SamplingParams
from lmlab.sampling_defaults import (
    LLAMA_CPP,
    OPENAI,
    SamplingDefaults,
    choose_defaults,
    from_generation_config,
    from_gguf_file,
    from_gguf_metadata,
)
from lmlab.serve.app import ServedModels, ServerConfig
from lmlab.serve.generation import _params
from lmlab.serve.protocol import ChatCompletionRequest

CARD = SamplingDefaults(temperature=0.2, top_p=0.9, source="model card")


def test_fields_not_given_are_none_until_filled_with_the_defaults():
    p = SamplingParams(max_tokens=5)
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty) == (None,) * 5
    assert not p.resolved
    filled = p.with_defaults(LLAMA_CPP)
    assert filled.resolved and filled.max_tokens == 5
    assert (filled.temperature, filled.top_k, filled.top_p, filled.min_p) == (0.8, 40, 0.95, 0.05)


def test_given_fields_stay_and_each_field_left_out_takes_the_default():
    # each field left out takes the model's value
    p = SamplingParams(top_k=5).with_defaults(LLAMA_CPP)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.8, 5, 0.95, 0.05)
    # a temperature given (OpenAI's 1 included) is used exactly; the filters left out are the
    # defaults' (vLLM's rule), so the whole distribution needs its filters sent off too
    p = SamplingParams(temperature=1.0).with_defaults(LLAMA_CPP)
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty) == (
        1,
        40,
        0.95,
        0.05,
        1,
    )
    p = SamplingParams(temperature=0.7, top_p=0.5).with_defaults(CARD)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.7, 0, 0.5, 0)
    p = SamplingParams(temperature=1.0).with_defaults(CARD)
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (1, 0, 0.9, 0)


def test_the_bundled_model_samples_as_its_model_card_says(llama_lm, torch_lm):
    assert BUNDLED[DEFAULT_LM].sampling == {"temperature": 0.2, "top_p": 0.9}
    assert llama_lm.sampling_defaults == CARD
    assert torch_lm.sampling_defaults == CARD  # loaded by its path: the same file, the same card


def test_a_generation_config_gives_the_defaults(tmp_path):
    config = {"bos_token_id": 1, "temperature": 0.6, "top_p": 0.9, "top_k": 20, "do_sample": True}
    (tmp_path / "generation_config.json").write_text(json.dumps(config))
    assert from_generation_config(tmp_path) == SamplingDefaults(
        temperature=0.6, top_k=20, top_p=0.9, source="generation_config.json"
    )
    # only token ids (GPT-2's), a broken file, no file: no recommendation
    (tmp_path / "generation_config.json").write_text('{"bos_token_id": 1, "eos_token_id": 2}')
    assert from_generation_config(tmp_path) is None
    (tmp_path / "generation_config.json").write_text("{not json")
    assert from_generation_config(tmp_path) is None
    assert from_generation_config(tmp_path / "missing") is None
    # a value out of range is skipped, not an error at every request
    (tmp_path / "generation_config.json").write_text('{"temperature": 0.5, "top_p": 0}')
    assert from_generation_config(tmp_path) == SamplingDefaults(
        temperature=0.5, source="generation_config.json"
    )


def test_a_transformers_folder_reads_its_generation_config(torch_lm, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    source = torch_lm.model.name_or_path
    for f in os.listdir(source):  # the converted folder, linked, with a generation config
        if f != "generation_config.json":
            os.symlink(os.path.join(source, f), folder / f)
    (folder / "generation_config.json").write_text('{"temperature": 0.6, "top_p": 0.95}')
    lm = load_lm(folder)
    expected = SamplingDefaults(0.6, top_p=0.95, source="generation_config.json")
    assert lm.sampling_defaults == expected
    (folder / "generation_config.json").unlink()
    assert load_lm(folder).sampling_defaults == LLAMA_CPP  # none: llama.cpp's


def test_gguf_metadata_gives_the_defaults(tmp_path):
    # llama.cpp hands metadata values over as text
    meta = {"general.sampling.temp": "0.600000", "general.sampling.top_k": "20"}
    assert from_gguf_metadata(meta) == SamplingDefaults(0.6, 20, source="GGUF metadata")
    assert from_gguf_metadata({"general.name": "x"}) is None
    # and a file read with the gguf package (the torch backend's path)
    from gguf import GGUFWriter

    path = tmp_path / "meta.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_token_list(["a", "bb", "ccé"])  # arrays and strings to read past first
    writer.add_array("test.floats", [1.0, 2.0])
    writer.add_string("general.name", "test")
    writer.add_float32("general.sampling.temp", 0.7)
    writer.add_uint32("general.sampling.top_k", 20)
    writer.add_float32("general.sampling.min_p", 0.1)
    writer.add_float32("general.sampling.penalty_repeat", 1.1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    got = from_gguf_file(path)
    assert got.source == "GGUF metadata" and got.top_k == 20 and got.top_p == 1
    assert (got.temperature, got.min_p, got.repetition_penalty) == pytest.approx((0.7, 0.1, 1.1))
    assert from_gguf_file(tmp_path / "missing.gguf") is None


def test_choices_and_a_bad_choice():
    lm = BigramLM()
    assert choose_defaults(lm) is lm.sampling_defaults == LLAMA_CPP  # no recommendation
    assert choose_defaults(lm, "openai") == OPENAI
    assert choose_defaults(lm, "llama.cpp") == LLAMA_CPP
    with pytest.raises(LmlabError, match=r"model, llama\.cpp, openai") as info:
        choose_defaults(lm, "vllm")
    assert info.value.param == "sampling_defaults"


def _greedy_defaults_lm() -> BigramLM:
    lm = BigramLM()
    lm.sampling_defaults = SamplingDefaults(temperature=0, source="test")
    return lm


def test_generate_and_chat_use_the_models_defaults_unless_told_otherwise():
    lm = _greedy_defaults_lm()
    greedy = generate(lm, "x", temperature=0, max_tokens=20, ignore_eos=True).token_ids
    # nothing given: the model's defaults (greedy here), whatever the seed
    for seed in range(3):
        assert generate(lm, "x", max_tokens=20, ignore_eos=True, seed=seed).token_ids == greedy
    streamed = generate_stream(lm, "x", max_tokens=20, ignore_eos=True)
    assert [t for c in streamed for t in c.token_ids] == greedy
    # OpenAI's defaults, or an explicit temperature: sampled, not greedy
    openai = [
        generate(lm, "x", max_tokens=20, ignore_eos=True, seed=s, sampling_defaults="openai")
        for s in range(3)
    ]
    assert any(o.token_ids != greedy for o in openai)
    explicit = generate(lm, "x", temperature=1, max_tokens=20, ignore_eos=True, seed=0)
    assert explicit.token_ids == openai[0].token_ids  # temperature 1 given: sampled as OpenAI
    with pytest.raises(LmlabError, match="sampling_defaults"):
        generate(lm, "x", sampling_defaults="hf")


class _ChatBigram(BigramLM):
    def __init__(self):
        super().__init__()
        self.tokenizer.render_chat = lambda messages, add_generation_prompt: messages[-1]["content"]


def test_chat_uses_the_models_defaults_too():
    lm = _ChatBigram()
    lm.sampling_defaults = SamplingDefaults(temperature=0, source="test")
    messages = [{"role": "user", "content": "x"}]
    greedy = generate(lm, "x", temperature=0, max_tokens=10, ignore_eos=True).token_ids
    assert chat(lm, messages, max_tokens=10, ignore_eos=True, seed=1).token_ids == greedy
    sampled = [
        chat(lm, messages, max_tokens=10, ignore_eos=True, seed=s, sampling_defaults="openai")
        for s in range(3)
    ]
    assert any(s.token_ids != greedy for s in sampled)


def _request(**fields) -> ChatCompletionRequest:
    messages = [{"role": "user", "content": "hi"}]
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, (0.2, 0, 0.9, 0, 1)),  # left out: the model's
        ({"temperature": None, "top_p": None}, (0.2, 0, 0.9, 0, 1)),  # null: the default
        ({"temperature": 1}, (1, 0, 0.9, 0, 1)),  # honoured exactly; top-p left out: 0.9
        ({"temperature": 1, "top_p": 1}, (1, 0, 1, 0, 1)),  # OpenAI's whole distribution
        ({"temperature": 0.5, "top_k": 7}, (0.5, 7, 0.9, 0, 1)),
        ({"top_p": 0.5}, (0.2, 0, 0.5, 0, 1)),
        ({"min_p": 0.1, "repetition_penalty": 1.2}, (0.2, 0, 0.9, 0.1, 1.2)),
    ],
)
def test_a_request_gets_the_served_defaults_for_what_it_leaves_out(fields, expected):
    lm = BigramLM()
    p = _params(_request(**fields), lm, [1, 2], CARD, max_tokens=None, limit=64, logprobs=False,
                top=0)  # fmt: skip
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty) == expected


@pytest.mark.parametrize("choice", ["model", "llama.cpp", "openai"])
def test_the_server_lists_the_defaults_it_applies(monkeypatch, choice):
    import lmlab.models

    lm = BigramLM()
    lm.sampling_defaults = CARD
    monkeypatch.setattr(lmlab.models, "load_lm", lambda *args, **kwargs: lm)
    monkeypatch.setattr("lmlab.serve.app._load_options", lambda spec, config: {})
    served = ServedModels(ServerConfig(chat_models=["x"], sampling_defaults=choice))
    expected = {"model": CARD, "llama.cpp": LLAMA_CPP, "openai": OPENAI}[choice]
    assert served.sampling == {"bigram-mock": expected}
    assert served.card("bigram-mock").model_dump()["sampling_defaults"] == expected.to_dict()


def lmlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmlab", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        timeout=600,
    )


def test_serve_help_says_what_the_defaults_are():
    out = lmlab("serve", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # help lines are wrapped
    assert "--sampling-defaults" in text
    assert "smollm2-135m-instruct: temperature 0.2, top-p 0.9" in text
    assert "temperature 0.8, top-k 40, top-p 0.95, min-p 0.05" in text
    assert "temperature 1, no filtering" in text
    assert "[default: model]" in text


def test_cli_generate_uses_the_models_defaults(monkeypatch):
    """A seeded CLI run gives what the library gives with the model's defaults, and not what
    the CLI's old constants (llama.cpp's) give."""
    args = ["The capital of France is", "--max-tokens", "8", "--seed", "4", "--json"]
    ours = json.loads(lmlab("generate", *args).stdout)["choices"][0]["text"]
    lm = load_lm(DEFAULT_LM)
    assert ours == generate(lm, args[0], max_tokens=8, seed=4).text
    old = json.loads(lmlab("generate", *args, "--sampling-defaults", "llama.cpp").stdout)
    assert (
        old["choices"][0]["text"]
        == generate(lm, args[0], max_tokens=8, seed=4, sampling_defaults="llama.cpp").text
    )


def test_sampling_on_a_model_without_recommendation_uses_llama_cpp_filters():
    """A model with no recommendation: min-p 0.05 and top-k 40 cut the tail (never sampled)."""
    table = torch.full((257, 257), -50.0)
    table[:, :60] = torch.linspace(0, -6, 60)  # 60 likely-ish tokens, falling
    lm = BigramLM(table)
    out = generate(lm, "a", n=64, max_tokens=1, seed=0)
    firsts = {c.token_ids[0] for c in out.choices}
    # at temperature 0.8, min-p 0.05 keeps tokens within log(20) * 0.8 = 2.4 of the top one:
    # the first 24 of the 60
    assert max(firsts) < 25
    free = generate(lm, "a", n=64, max_tokens=1, seed=0, sampling_defaults="openai")
    assert max(c.token_ids[0] for c in free.choices) >= 25


@pytest.mark.slow
def test_serve_sampling_defaults_openai_restores_the_old_behaviour():
    import httpx
    from server_process import Server

    server = Server("--sampling-defaults", "openai", "--embedding-model", "")
    try:
        card = httpx.get(f"{server.url}/v1/models/{DEFAULT_LM}", timeout=60).json()
        assert card["sampling_defaults"] == OPENAI.to_dict()
    finally:
        server.stop()
    out = server.process.stdout.read()
    assert "a request that leaves sampling fields out gets temperature 1, no filtering" in out
