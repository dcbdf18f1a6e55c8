"""The server through the official `openai` client and LangChain, as users call it."""

import json
import threading
import time

import httpx
import openai
import pytest
from server_process import Server

MODEL = "smollm2-135m-instruct"
TUTOR = [
    {"role": "system", "content": "You are a terse geography tutor."},
    {"role": "user", "content": "What is the capital of France?"},
]


def test_models_lists_the_served_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL, "all-minilm-l6-v2"]


def test_chat_answers_with_usage(client):
    r = client.chat.completions.create(model=MODEL, messages=TUTOR, temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens > 20


def test_multi_turn_history_is_used(client):
    messages = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, temperature=0)
    assert "Ada" in r.choices[0].message.content


def test_streaming_joins_to_the_same_text(client):
    whole = client.chat.completions.create(model=MODEL, messages=TUTOR, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=TUTOR,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_n_and_seed(client):
    def ask(seed):
        return client.chat.completions.create(
            model=MODEL, messages=TUTOR, temperature=1.0, n=3, seed=seed, max_tokens=20
        )

    a, b, c = ask(7), ask(7), ask(8)
    texts = lambda r: [ch.message.content for ch in r.choices]  # noqa: E731
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    assert texts(a) == texts(b)
    assert texts(a) != texts(c)


def test_logprobs_with_top_alternatives(client):
    r = client.chat.completions.create(
        model=MODEL, messages=TUTOR, temperature=0, logprobs=True, top_logprobs=3, max_tokens=5
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for step in content:
        assert step.logprob <= 0 and len(step.top_logprobs) == 3
        assert step.logprob == pytest.approx(step.top_logprobs[0].logprob, abs=1e-4)  # greedy


def test_json_object_mode_returns_valid_json(client):
    messages = [
        {"role": "system", "content": "You answer in JSON."},
        {"role": "user", "content": "Give the capital of France as JSON."},
    ]
    for seed in (1, 2, 3):
        r = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            response_format={"type": "json_object"},
            temperature=1.0,
            seed=seed,
            max_tokens=300,
        )
        assert r.choices[0].finish_reason == "stop"
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_completions_endpoint(client):
    r = client.completions.create(
        model=MODEL,
        prompt="The capital of France is",
        max_tokens=4,
        temperature=0,
        echo=True,
        logprobs=2,
    )
    assert r.choices[0].text.startswith("The capital of France is")
    assert "Paris" in r.choices[0].text
    assert len(r.choices[0].logprobs.tokens) == 4
    two = client.completions.create(model=MODEL, prompt=["One", "Two"], max_tokens=3, n=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]


def test_concurrent_requests_decode_as_if_alone(client):
    prompts = ["Name a colour.", "Name a fruit.", "Name a city.", "Name an animal."]

    def ask(p):
        messages = [{"role": "user", "content": p}]
        r = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=24, logprobs=True,
            top_logprobs=5,
        )  # fmt: skip
        return r.choices[0].logprobs.content

    alone = [ask(p) for p in prompts]
    together = [None] * len(prompts)

    def run(i):
        together[i] = ask(prompts[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # llama.cpp's sums depend a little on what shares the batch and where a sequence sits in the
    # shared KV cache (logits move by up to ~1), so greedy runs may part ways where two tokens
    # nearly tie. A sequence fed another's tokens or logits parts ways at a token its own
    # distribution finds unlikely.
    for mine, reference in zip(together, alone, strict=True):
        for a, b in zip(mine, reference, strict=False):
            if a.token != b.token:
                rivals = {t.token: t.logprob for t in b.top_logprobs}
                assert a.token in rivals and b.logprob - rivals[a.token] < 1.0, (a, b)
                break


def test_a_client_that_disconnects_stops_its_generation(server, client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Tell a very long story."}],
        max_tokens=3000,
        stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        if httpx.get(f"{server.url}/health").json()["running"][MODEL] == 0:
            return
        time.sleep(0.2)
    pytest.fail("generation still running after the client left")


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        (dict(model="gpt-4o"), openai.NotFoundError, "model"),
        (dict(top_p=1.5), openai.BadRequestError, "top_p"),
        (dict(n=0), openai.BadRequestError, "n"),
        (dict(max_tokens=-5), openai.BadRequestError, "max_tokens"),
        (dict(max_tokens=10**9), openai.BadRequestError, "messages"),
        (dict(temperature=-1), openai.BadRequestError, "temperature"),
        (dict(messages=[{"role": "wizard", "content": "hi"}]), openai.BadRequestError, None),
        (dict(messages=[]), openai.BadRequestError, "messages"),
    ],
)
def test_bad_requests_raise_the_openai_errors(client, kwargs, error, param):
    request = dict(model=MODEL, messages=TUTOR) | kwargs
    with pytest.raises(error) as info:
        client.chat.completions.create(**request)
    body = info.value.body
    assert set(body) >= {"message", "type", "param", "code"}
    if param:
        assert body["param"].startswith(param)
    if error is openai.NotFoundError:
        assert MODEL in body["message"]


def test_context_overflow_has_its_code(client):
    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=long)
    assert info.value.body["code"] == "context_length_exceeded"


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}',
            400,
        ),
        (b'{"model": "smollm2-135m-instruct"}', 400),
        (
            json.dumps(
                {"model": MODEL, "messages": [{"role": "user", "content": "x" * 10_000_000}]}
            ).encode(),
            413,
        ),
    ],
)
def test_malformed_bodies_get_4xx_in_openai_shape(server, content, status):
    r = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == status
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{server.url}/health").status_code == 200  # still serving


def test_langchain_chat_openai_with_history(server):
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{server.url}/v1", api_key="unused", model=MODEL, temperature=0)
    reply = llm.invoke(
        [
            SystemMessage("You are a terse assistant."),
            HumanMessage("My name is Ada."),
            AIMessage("Nice to meet you, Ada."),
            HumanMessage("What is my name?"),
        ]
    )
    assert "Ada" in reply.content


def test_api_key_is_required_when_set():
    s = Server("--embedding-model", "", "--api-key", "sesame")
    try:
        bad = openai.OpenAI(base_url=f"{s.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=f"{s.url}/v1", api_key="sesame", max_retries=0)
        assert good.models.list().data[0].id == MODEL
        assert httpx.get(f"{s.url}/health").status_code == 200  # health stays open
    finally:
        s.stop()
