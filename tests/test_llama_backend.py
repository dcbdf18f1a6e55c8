"""The llama.cpp backend: its tokenizer, batched rows, and agreement with the torch backend."""

import pytest
import torch

import lmlab

TEXTS = [
    "Hello world",
    "  naïve café, 日本語 🙂 — tabs\tand\nnewlines",
    "<|im_start|>user\nhi<|im_end|>\n",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_gguf_vocabulary_tokenizes_like_the_converted_tokenizer(llama_lm, torch_lm, text):
    ours, theirs = llama_lm.tokenizer, torch_lm.tokenizer
    ids = ours.encode(text, add_special_tokens=True)
    assert ids == theirs.encode(text, add_special_tokens=True)
    assert ours.decode(ids) == theirs.decode(ids)
    assert ours.decode(ids, skip_special_tokens=False) == text


def test_both_tokenizers_render_the_same_chat_prompt(llama_lm, torch_lm):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    assert llama_lm.tokenizer.render_chat(messages) == torch_lm.tokenizer.render_chat(messages)


def test_rows_of_a_batch_decode_like_a_single_row(llama_lm):
    one = lmlab.generate(llama_lm, "The river bank", temperature=0, max_tokens=20, ignore_eos=True)
    many = lmlab.generate(
        llama_lm, "The river bank", temperature=0, max_tokens=20, n=3, ignore_eos=True
    )
    assert [c.token_ids for c in many.choices] == [one.token_ids] * 3
    assert sorted(llama_lm._free_seqs) == list(range(llama_lm.max_batch_size))  # all released


def test_more_samples_than_slots_run_in_groups(llama_lm):
    out = lmlab.generate(
        llama_lm, "Hi", temperature=1.0, seed=5, n=llama_lm.max_batch_size + 2, max_tokens=4
    )
    assert [c.index for c in out.choices] == list(range(llama_lm.max_batch_size + 2))


def test_all_positions_logits_match_incremental_logits(llama_lm):
    ids = llama_lm.tokenizer.encode("One two three four five six")
    state = llama_lm.new_state(1)
    full = llama_lm.forward(state, torch.tensor([ids]), all_positions=True)[0]
    llama_lm.release(state)
    state = llama_lm.new_state(1)
    llama_lm.forward(state, torch.tensor([ids[:3]]))
    step = llama_lm.forward(state, torch.tensor([ids[3:4]]))[0]
    llama_lm.release(state)
    assert full.shape == (len(ids), llama_lm.vocab_size)
    assert torch.allclose(step, full[3], atol=1e-2)


def test_llama_and_torch_backends_score_text_alike(llama_lm, torch_lm):
    text = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park."
    a, b = lmlab.score(llama_lm, text), lmlab.score(torch_lm, text)
    assert a.token_ids == b.token_ids
    assert a.perplexity == pytest.approx(b.perplexity, rel=0.1)


def test_greedy_is_deterministic_and_sampling_seeded(llama_lm):
    runs = [
        lmlab.generate(llama_lm, "Water is", temperature=0, max_tokens=12).token_ids
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    a = lmlab.generate(
        llama_lm, "Water is", temperature=1.0, seed=11, max_tokens=16, ignore_eos=True
    )
    b = lmlab.generate(
        llama_lm, "Water is", temperature=1.0, seed=11, max_tokens=16, ignore_eos=True
    )
    c = lmlab.generate(
        llama_lm, "Water is", temperature=1.0, seed=12, max_tokens=16, ignore_eos=True
    )
    assert a.token_ids == b.token_ids != c.token_ids


def test_chat_answers_and_stops_at_end_of_turn(llama_lm):
    messages = [
        {"role": "system", "content": "You are a terse geography tutor."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    reply = lmlab.chat(llama_lm, messages, temperature=0, max_tokens=80)
    assert reply.finish_reason == "stop"
    assert reply.token_ids[-1] in llama_lm.tokenizer.eos_ids
    assert "Paris" in reply.text and "<|im_end|>" not in reply.text


def test_forward_each_steps_independent_sequences_in_one_batch(llama_lm):
    prompts = ["The river bank", "Money in the bank is", "A completely different start"]
    alone = []
    for p in prompts:
        state = llama_lm.new_state(1)
        alone.append(llama_lm.forward(state, torch.tensor([llama_lm.tokenizer.encode(p)]))[0])
        llama_lm.release(state)
    states = [llama_lm.new_state(1) for _ in prompts]
    together = llama_lm.forward_each(states, [llama_lm.tokenizer.encode(p) for p in prompts])
    step = llama_lm.forward_each(states, [[11], [12], [13]])
    for s in states:
        llama_lm.release(s)
    assert together.shape == (3, llama_lm.vocab_size) and step.shape == (3, llama_lm.vocab_size)
    for a, b in zip(alone, together, strict=True):
        assert torch.allclose(a, b, atol=2e-2)
        assert a.argmax() == b.argmax()
