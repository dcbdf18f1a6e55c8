"""A run we trained, served: sequences of different lengths step together as if each were alone."""

import pytest
import torch

from lmlab.lm.neural.run import NeuralLM, build_model, make_config

VOCAB, CONTEXT = 50, 12  # a Transformer's cache fills (and slides) within the test

KINDS = {
    "gpt-rope": ("gpt", dict(positions="rope", n_layer=2, n_head=2, n_embd=16)),
    "gpt-learned": ("gpt", dict(positions="learned", n_layer=2, n_head=2, n_embd=16)),
    "gpt-sinusoidal": ("gpt", dict(positions="sinusoidal", n_layer=1, n_head=2, n_embd=16)),
    "lstm": ("lstm", dict(n_layer=2, n_embd=16)),
    "gru": ("gru", dict(n_layer=2, n_embd=16)),
    "rnn": ("rnn", dict(n_layer=1, n_embd=16)),
    "mlp": ("mlp", dict(context=3, n_embd=8, n_hidden=16, direct=True)),
}


def neural_lm(name: str) -> NeuralLM:
    kind, options = KINDS[name]
    if kind != "mlp":
        options = {**options, "context": CONTEXT}
    torch.manual_seed(0)
    model = build_model(kind, make_config(kind, vocab_size=VOCAB, **options))
    return NeuralLM(model, tokenizer=None, name=name, kind=kind)


def alone(lm: NeuralLM, prompt: list[int], steps: list[int]) -> list[torch.Tensor]:
    """Logits after the prompt, then after each step token, the sequence read by itself."""
    state = lm.new_state(1)
    out = [lm.forward(state, torch.tensor([prompt]))[0]]
    out += [lm.forward(state, torch.tensor([[t]]))[0] for t in steps]
    return out


@pytest.mark.parametrize("name", KINDS)
def test_sequences_stepped_together_get_the_logits_of_each_read_alone(name):
    lm = neural_lm(name)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(VOCAB, (n,), generator=g).tolist() for n in (5, 2, 9, 3)]
    steps = torch.randint(VOCAB, (4, 10), generator=g).tolist()
    want = [alone(lm, p, s) for p, s in zip(prompts, steps, strict=True)]
    states = [lm.new_state(1) for _ in prompts]
    done = [0] * 4  # step tokens each row has read
    # rows 0 and 1 start; row 2 joins after two steps (its prompt read beside their steps);
    # row 3 after four; row 1 leaves after six. The rows' caches fill at different steps.
    plan = [[0, 1], [0, 1], [0, 1, 2], [0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3]] + [[0, 2, 3]] * 4
    started = set()
    for rows in plan:
        feeds = []
        for r in rows:
            feeds.append(steps[r][done[r] : done[r] + 1] if r in started else prompts[r])
        logits = lm.forward_each([states[r] for r in rows], feeds)
        for r, got in zip(rows, logits, strict=True):
            if r in started:
                done[r] += 1
            started.add(r)
            torch.testing.assert_close(got, want[r][done[r]], atol=1e-5, rtol=1e-5)
    assert done == [9, 5, 7, 5]


def test_rows_are_stepped_in_one_batch():
    """The step goes through the batched path: one model call for all the stepping rows."""
    lm = neural_lm("gpt-rope")
    states = [lm.new_state(1) for _ in range(3)]
    lm.forward_each(states, [[1, 2, 3], [4], [5, 6]])
    calls = []
    hook = lm.model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    lm.forward_each(states, [[7], [8], [9]])
    hook.remove()
    assert calls == [torch.Size([3, 1])]
