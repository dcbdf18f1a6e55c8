"""The serving engine: concurrent requests give exactly what `generate` gives alone."""

import asyncio
import threading
import time

import pytest
from mock_lm import BigramLM

from lmlab import generate
from lmlab.decode import encode_prompt
from lmlab.lm.base import CacheFull
from lmlab.models import DEFAULT_LM, load_lm
from lmlab.sampling import SamplingParams
from lmlab.serve.engine import Engine


class Collector:
    """Gathers one request's events from the engine thread."""

    def __init__(self, n: int) -> None:
        self.texts = [""] * n
        self.finish = [None] * n
        self.done = threading.Event()
        self.error = None

    def __call__(self, event) -> None:
        if event is None:
            self.done.set()
        elif isinstance(event, Exception):
            self.error = event
            self.done.set()
        else:
            self.texts[event.index] += event.text
            self.finish[event.index] = event.finish_reason or self.finish[event.index]


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """A GPT trained here (char level, 12 positions: long prompts slide)."""
    from lmlab.training import TrainConfig, train

    folder = tmp_path_factory.mktemp("gpt-run")
    corpus = folder / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over a lazy dog; hello xyz abc.\n" * 40)
    options = dict(context=12, n_layer=2, n_head=2, n_embd=16)
    config = TrainConfig(steps=150, batch_size=8, lr=1e-2)
    train("gpt", [corpus], folder / "run", tokenizer="char", model_options=options,
          config=config, progress=False)  # fmt: skip
    return load_lm(folder / "run")


@pytest.mark.parametrize("prefill_chunk", [128, 3])  # 3: prompts read over several steps
@pytest.mark.parametrize("model", ["bigram", "gpt run"])  # the second steps its rows batched
def test_concurrent_requests_equal_generate_alone(prefill_chunk, model, request):
    lm = BigramLM() if model == "bigram" else request.getfixturevalue("gpt_run")
    engine = Engine(lm, max_running=3, prefill_chunk=prefill_chunk)  # some sequences must wait
    requests = [
        ("abc", dict(temperature=0, max_tokens=12)),
        ("hello", dict(temperature=1.0, seed=4, n=2, max_tokens=20, ignore_eos=True)),
        ("x", dict(temperature=0.7, top_k=5, seed=1, max_tokens=7, stop=["e"])),
        ("quite a long prompt here", dict(temperature=1.2, seed=9, max_tokens=30)),
    ]
    collectors = []
    for prompt, options in requests:
        params = SamplingParams.from_options(options)
        collector = Collector(params.n)
        engine.submit(encode_prompt(lm, prompt), params, collector)
        collectors.append(collector)
    for (prompt, options), collector in zip(requests, collectors, strict=True):
        assert collector.done.wait(30) and collector.error is None
        alone = generate(lm, prompt, **options)
        assert collector.texts == [c.text for c in alone.choices]
        assert collector.finish == [c.finish_reason for c in alone.choices]
    assert engine.running == 0


def test_a_cancelled_request_leaves_the_engine():
    lm = BigramLM(context_length=10**6)  # 100k tokens to go: cancelled long before the end
    engine = Engine(lm)
    collector = Collector(1)
    params = SamplingParams(max_tokens=100_000, ignore_eos=True, seed=0)
    request = engine.submit(encode_prompt(lm, "a"), params, collector)
    deadline = time.time() + 10
    while engine.running == 0 and time.time() < deadline:
        time.sleep(0.01)
    Engine.cancel(request)
    while engine.running and time.time() < deadline:
        time.sleep(0.01)
    assert engine.running == 0 and not collector.done.is_set()
    # and the engine still serves others
    other = Collector(1)
    engine.submit(encode_prompt(lm, "b"), SamplingParams(max_tokens=3, temperature=0), other)
    assert other.done.wait(10) and len(other.texts[0]) > 0


def _record_calls(lm) -> list[list[int]]:
    """The lengths of the token lists of each `forward_each` call on `lm`, as they happen."""
    calls = []
    forward_each = lm.forward_each

    def spy(states, token_ids):
        calls.append([len(ids) for ids in token_ids])
        return forward_each(states, token_ids)

    lm.forward_each = spy
    return calls


def test_a_joining_prompt_is_read_in_the_same_call_as_the_running_tokens():
    lm = BigramLM(context_length=10**6)
    calls = _record_calls(lm)
    engine = Engine(lm)
    first, second = Collector(1), Collector(1)
    params = SamplingParams(max_tokens=100_000, ignore_eos=True, seed=0)
    running = engine.submit(encode_prompt(lm, "a"), params, first)
    deadline = time.time() + 10
    while engine.running == 0 and time.time() < deadline:
        time.sleep(0.01)
    prompt = encode_prompt(lm, "a longer prompt")
    engine.submit(prompt, SamplingParams(max_tokens=3, temperature=0), second)
    assert second.done.wait(10) and second.error is None
    Engine.cancel(running)
    # one call carried the running sequence's next token and the whole new prompt
    assert any(sorted(c) == [1, len(prompt)] for c in calls), calls[-5:]


def test_a_long_prompt_is_read_in_pieces_while_the_others_keep_streaming():
    lm = BigramLM(context_length=10**6)
    calls = _record_calls(lm)
    engine = Engine(lm, prefill_chunk=8)
    first, second = Collector(1), Collector(1)
    running = engine.submit(
        encode_prompt(lm, "a"), SamplingParams(max_tokens=100_000, ignore_eos=True), first
    )
    deadline = time.time() + 10
    while engine.running == 0 and time.time() < deadline:
        time.sleep(0.01)
    text = "a prompt of some fifty characters, read in pieces."
    prompt = encode_prompt(lm, text)
    engine.submit(prompt, SamplingParams(max_tokens=5, temperature=0), second)
    assert second.done.wait(10) and second.error is None
    Engine.cancel(running)
    pieces = [sorted(c)[-1] for c in calls if len(c) == 2]  # steps with both sequences
    prompt_steps = pieces[: len(prompt) // 8 + 1]
    # each step read one token of the running sequence and at most 8 of the prompt...
    assert all(c[0] == 1 for c in calls if len(c) == 2)
    assert max(pieces) == 8 and sum(prompt_steps) >= len(prompt) > 8
    # ...and the answer is the one the prompt gets read in one piece, alone
    assert second.texts[0] == generate(lm, text, max_tokens=5, temperature=0).choices[0].text


def test_a_burst_of_events_wakes_the_event_loop_once():
    from lmlab.serve.generation import _Relay

    async def main():
        loop = asyncio.get_running_loop()
        wakeups = []
        call_soon = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda *a: wakeups.append(a) or call_soon(*a)
        relay = _Relay(loop)
        inboxes = [asyncio.Queue() for _ in range(3)]
        for step in range(2):  # one engine step: a chunk for each of 3 streams, then the end
            for k, inbox in enumerate(inboxes):
                relay.send(inbox, (step, k))
            assert len(wakeups) == step + 1
            got = [await asyncio.wait_for(inbox.get(), 1) for inbox in inboxes]
            assert got == [(step, k) for k in range(3)]
        relay.send(inboxes[0], None)
        assert await asyncio.wait_for(inboxes[0].get(), 1) is None and len(wakeups) == 3

    asyncio.run(main())


@pytest.fixture(params=["llama", "torch"])
def fresh_lm(request, gguf_path):
    """The bundled model on either backend, with nothing read yet (nothing else to share)."""
    if request.param == "llama":
        return request.getfixturevalue("fresh_llama_lm")
    return load_lm(gguf_path, backend="torch")


def test_prompts_arriving_together_share_what_the_first_ones_read(fresh_lm):
    lm = fresh_lm
    engine = Engine(lm, prefill_chunk=16)
    busy = Collector(1)  # keeps the engine stepping, so the three below join in one step
    blocker = engine.submit(
        lm.tokenizer.encode("Count to a thousand."), SamplingParams(max_tokens=10_000), busy
    )
    deadline = time.time() + 10
    while engine.running == 0 and time.time() < deadline:
        time.sleep(0.01)
    system = lm.tokenizer.encode("You are a careful assistant. Answer in one short sentence.\n")
    questions = ("Why is the sky blue?", "Hi.", "What is rain?")
    collectors = [Collector(1) for _ in questions]
    before = lm.reused_tokens
    for question, collector in zip(questions, collectors, strict=True):
        prompt = system + lm.tokenizer.encode(question)
        engine.submit(prompt, SamplingParams(max_tokens=2, temperature=0), collector)
    assert all(c.done.wait(60) and c.error is None for c in collectors)
    Engine.cancel(blocker)
    # the first read the instructions in the first step; the two read later shared them
    assert lm.reused_tokens - before == 2 * len(system)


class PooledBigramLM(BigramLM):
    """A BigramLM whose live sequences share a cache of `cells` tokens, as llama.cpp's do."""

    def __init__(self, cells: int) -> None:
        super().__init__()
        self.cells, self.live = cells, []

    def new_state(self, batch_size: int = 1):
        state = super().new_state(batch_size)
        self.live.append(state)
        return state

    def release(self, state) -> None:
        self.live.remove(state)

    def forward_each(self, states, token_ids):
        if sum(s.length for s in self.live) + sum(map(len, token_ids)) > self.cells:
            raise CacheFull("no room")  # nothing read, as llama.cpp
        return super().forward_each(states, token_ids)


def test_sequences_that_fill_the_shared_cache_are_paused_and_finish_as_if_alone():
    lm = PooledBigramLM(cells=150)  # each request needs 20 + 40 cells: 4 of them do not fit
    engine = Engine(lm, prefill_chunk=16)
    prompts = [f"request number {k}, go" for k in range(4)]
    options = dict(temperature=1.0, max_tokens=40, ignore_eos=True)
    collectors = [Collector(1) for _ in prompts]
    for k, (prompt, collector) in enumerate(zip(prompts, collectors, strict=True)):
        engine.submit(encode_prompt(lm, prompt), SamplingParams(seed=k, **options), collector)
    for k, (prompt, collector) in enumerate(zip(prompts, collectors, strict=True)):
        assert collector.done.wait(30) and collector.error is None
        alone = generate(BigramLM(), prompt, seed=k, **options)  # the same table
        assert collector.texts == [alone.choices[0].text]
    assert engine.preempted >= 1 and engine.running == 0 and not lm.live


def test_a_sequence_longer_than_the_cache_fails_and_the_paused_one_still_runs():
    lm = PooledBigramLM(cells=30)  # one request alone needs 20 + 40 cells
    engine = Engine(lm)
    collectors = [Collector(1) for _ in range(2)]
    for collector in collectors:
        params = SamplingParams(max_tokens=40, ignore_eos=True)
        engine.submit(encode_prompt(lm, "twenty bytes of text"), params, collector)
    for collector in collectors:  # the second, paused for the first, is run (and fails) too
        assert collector.done.wait(10) and isinstance(collector.error, CacheFull)
    assert engine.running == 0 and not lm.live


def test_the_llama_backend_pauses_sequences_when_its_cache_is_full(gguf_path):
    lm = load_lm(DEFAULT_LM, backend="llama", context_length=256, max_batch_size=4)
    engine = Engine(lm)
    collectors = [Collector(1) for _ in range(4)]  # 4 x (~25 + 80) tokens in 256 cells
    for k, collector in enumerate(collectors):
        prompt = lm.tokenizer.encode(f"Write a long story about a dragon called number {k}.")
        params = SamplingParams(max_tokens=80, temperature=0.8, seed=k, ignore_eos=True)
        engine.submit(prompt, params, collector)
    for collector in collectors:
        assert collector.done.wait(120) and collector.error is None
        assert collector.finish == ["length"]
    assert engine.preempted >= 1
