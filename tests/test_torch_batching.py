"""Continuous batching on the torch backend: many sequences in one forward pass, as if alone."""

import threading

import openai
import pytest
import torch
from server_process import Server

import lmlab
from lmlab.models import DEFAULT_LM, load_lm

TEXTS = [
    "The capital of France is Paris, the capital of Italy is Rome and the capital of Spain is "
    "Madrid; all three are old cities.",
    "Once upon a time, in a small village far away, there lived an old clockmaker who",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Why is the sky blue? Because",
]


@pytest.fixture(scope="module")
def lm32(gguf_path):
    """The bundled model at float32, so batched and lone sums agree to ~1e-5."""
    return load_lm(gguf_path, backend="torch", dtype="float32")


def full_logits(lm, ids: list[int]) -> torch.Tensor:
    """Every position's next-token logits from one uncached pass over the whole sequence."""
    state = lm.new_state(1)
    return lm.forward(state, torch.tensor([ids]), all_positions=True)[0]


def test_batched_steps_equal_each_sequence_alone_as_sequences_join_and_leave(lm32):
    tokens = [lm32.tokenizer.encode(t, add_special_tokens=True) for t in TEXTS]
    prompt_len = [9, 6, 5, 3]  # rows of different lengths: the batch cache is left-padded
    reference = [full_logits(lm32, ids) for ids in tokens]
    states = [lm32.new_state(1) for _ in TEXTS]
    read = [0] * len(TEXTS)  # tokens each sequence has consumed

    def check(rows: list[int], logits: torch.Tensor) -> None:
        for row, out in zip(rows, logits, strict=True):
            want = reference[row][read[row] - 1]
            torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)

    def join(rows: list[int]) -> None:
        ids = [tokens[r][: prompt_len[r]] for r in rows]
        logits = lm32.forward_each([states[r] for r in rows], ids)
        for r in rows:
            read[r] = prompt_len[r]
        check(rows, logits)

    def step(rows: list[int], times: int) -> None:
        for _ in range(times):
            ids = [[tokens[r][read[r]]] for r in rows]
            logits = lm32.forward_each([states[r] for r in rows], ids)
            for r in rows:
                read[r] += 1
            check(rows, logits)

    join([0, 1])
    step([0, 1], 3)
    join([2])  # a sequence joins the running ones
    step([0, 1, 2], 3)
    lm32.release(states[1])  # one leaves
    step([2, 0], 2)  # the rest go on, in another order
    join([3])
    step([0, 2, 3], 2)
    # a row that lived in a shared batch continues alone with the ordinary forward
    out = lm32.forward(states[0], torch.tensor([[tokens[0][read[0]]]]))
    read[0] += 1
    check([0], out)
    step([2, 3], 1)


@pytest.mark.slow
def test_a_torch_backend_server_serves_concurrent_streams_as_if_alone(torch_lm):
    prompts = ["Name a colour.", "Name a fruit.", "Name a city.", "Name an animal."]
    alone = [
        lmlab.chat(torch_lm, [{"role": "user", "content": p}], temperature=0, max_tokens=16).text
        for p in prompts
    ]
    server = Server("--backend", "torch", "--embedding-model", "")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        together: list[str | None] = [None] * len(prompts)

        def run(i: int) -> None:
            stream = client.chat.completions.create(
                model=DEFAULT_LM,
                messages=[{"role": "user", "content": prompts[i]}],
                temperature=0,
                max_tokens=16,
                stream=True,
            )
            together[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    # the server runs float16, whose sums depend a little on the batch they are in: long greedy
    # runs may part ways late; a row mixed up with another would differ from its first words
    assert [t[:20] for t in together] == [a[:20] for a in alone]
    assert all(len(t) > 20 for t in together)


def test_a_prompt_reads_only_what_no_sequence_has_read(lm32):
    lm = lm32
    system = lm.tokenizer.encode("You are a careful assistant. Answer in one short sentence.\n")
    first, second = (system + lm.tokenizer.encode(q) for q in ("Why is the sky blue?", "Hi."))
    running = lm.new_state(1)
    lm.forward_each([running], [first])  # a live sequence: others may share its keys and values
    before = lm.reused_tokens
    joining = lm.new_state(1)
    got = lm.forward_each([joining], [second])[0]
    assert lm.reused_tokens - before == len(system) and joining.length == len(second)
    torch.testing.assert_close(got, full_logits(lm, second)[-1], atol=1e-4, rtol=1e-4)
    lm.forward_each([running, joining], [[11], [12]])  # a step in a shared, left-padded batch
    lm.release(joining)
    lm.release(running)  # released last, from inside the batch: its keys and values are kept
    turn = [*first, 11, 13]  # the next turn of the same conversation
    again = lm.new_state(1)
    got = lm.forward_each([again], [turn])[0]
    assert lm.reused_tokens - before == len(system) + len(first) + 1
    torch.testing.assert_close(got, full_logits(lm, turn)[-1], atol=1e-4, rtol=1e-4)
    # the rows of a fresh state (n samples of one prompt) share it too
    other_turn = [*first, 11, 14]
    rows = lm.new_state(2)
    got = lm.forward(rows, torch.tensor([other_turn] * 2))
    assert lm.reused_tokens - before == len(system) + 3 * (len(first) + 1)
    want = full_logits(lm, other_turn)[-1]
    for row in got:
        torch.testing.assert_close(row, want, atol=1e-4, rtol=1e-4)


def test_scoring_reads_every_token_itself(lm32):
    ids = lm32.tokenizer.encode("The cat sat on the mat. The cat sat on the mat.")
    held = lm32.new_state(1)
    lm32.forward(held, torch.tensor([ids]))
    before = lm32.reused_tokens
    scored = lm32.forward(lm32.new_state(1), torch.tensor([ids]), all_positions=True)
    assert lm32.reused_tokens == before and scored.shape[1] == len(ids)
