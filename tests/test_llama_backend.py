"""The llama.cpp backend: its tokenizer, batched rows, and agreement with the torch backend."""

import os

import pytest
import torch
import torch.nn.functional as F

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


def test_rows_of_a_batch_decode_like_a_single_row(fresh_llama_lm):
    lm = fresh_llama_lm
    one = lmlab.generate(lm, "The river bank", temperature=0, max_tokens=20, ignore_eos=True)
    many = lmlab.generate(lm, "The river bank", temperature=0, max_tokens=20, n=3, ignore_eos=True)
    assert [c.token_ids for c in many.choices] == [one.token_ids] * 3
    assert lm.live_sequences == 0  # all released


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
    assert _same_distribution(step, full[3])


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


def _same_distribution(a, b) -> bool:
    """Next-token distributions equal up to llama.cpp's rounding, which depends on where in its
    cache a sequence's cells lie: reading the same text after other sequences left holes moved
    the probabilities by up to 0.018 (KL 0.004) here, with or without shared cells. A wrong
    position or a wrong cell gives another distribution altogether."""
    kl = F.kl_div(a.log_softmax(-1), b.log_softmax(-1), log_target=True, reduction="sum")
    return a.argmax() == b.argmax() and kl < 0.01


def _read_alone(lm, ids):
    """Next-token logits after `ids`, every token read from scratch (prefix reuse off)."""
    reuses, lm.reuses_prefixes = lm.reuses_prefixes, False
    state = lm.new_state(1)
    logits = lm.forward(state, torch.tensor([ids]))[0]
    lm.release(state)
    lm.reuses_prefixes = reuses
    return logits


def test_a_prompt_reads_only_what_no_sequence_has_read(fresh_llama_lm):
    lm = fresh_llama_lm
    system = lm.tokenizer.encode("You are a careful assistant. Answer in one short sentence.\n")
    first, second = (system + lm.tokenizer.encode(q) for q in ("Why is the sky blue?", "Hi."))
    expected = [_read_alone(lm, ids) for ids in (first, second, [*first, 11])]
    running = lm.new_state(1)
    lm.forward_each([running], [first])  # a live sequence: others may share its cells
    before = lm.reused_tokens
    joining = lm.new_state(1)
    got = lm.forward_each([joining], [second])[0]
    assert lm.reused_tokens - before == len(system) and joining.length == len(second)
    assert _same_distribution(got, expected[1])
    lm.release(joining)
    lm.release(running)  # released last: its cells are kept
    again = lm.new_state(1)
    got = lm.forward_each([again], [[*first, 11]])[0]  # the next turn of the same conversation
    assert lm.reused_tokens - before == len(system) + len(first)
    assert _same_distribution(got, expected[2])
    lm.release(again)


def test_a_shared_prefix_then_the_rest_in_pieces_reads_the_whole_prompt(fresh_llama_lm):
    lm = fresh_llama_lm  # as the server's engine reads a joining prompt
    system = lm.tokenizer.encode("You are a careful assistant. Answer in one short sentence.\n")
    first, second = (system + lm.tokenizer.encode(q) for q in ("Why is the sky blue?", "Hi there."))
    expected = _read_alone(lm, second)
    running = lm.new_state(1)
    lm.forward_each([running], [first])
    joining = lm.new_state(1)
    assert lm.share_prefix(joining, second) == len(system) == joining.length
    assert lm.share_prefix(joining, second) == 0  # only a fresh state shares
    rest = second[len(system) :]
    lm.forward_each([joining, running], [rest[:2], [11]])
    got = lm.forward_each([joining], [rest[2:]])[0]
    assert joining.length == len(second) and _same_distribution(got, expected)
    lm.release(joining)
    lm.release(running)


def test_threads_for_one_token_and_for_batches_are_set_apart(gguf_path):
    from lmlab.lm.llama_cpp_lm import LlamaCppLM

    lm = LlamaCppLM(gguf_path, context_length=256, n_threads=1, n_threads_batch=2)
    assert (lm._lib.llama_n_threads(lm._ctx), lm._lib.llama_n_threads_batch(lm._ctx)) == (1, 2)
    lm = LlamaCppLM(gguf_path, context_length=256, n_threads=2)
    assert (lm._lib.llama_n_threads(lm._ctx), lm._lib.llama_n_threads_batch(lm._ctx)) == (2, 2)


def test_the_server_sets_the_threads_it_measured_for_one_sequence(gguf_path):
    from lmlab.lm.llama_cpp_lm import LlamaCppLM
    from lmlab.serve.app import pick_decode_threads

    lm = LlamaCppLM(gguf_path, context_length=256, n_threads=1, n_threads_batch=2)
    chosen = pick_decode_threads(lm, threads_batch=2)
    assert chosen in {max(1, (os.cpu_count() or 1) - 1), os.cpu_count()}
    assert (lm._lib.llama_n_threads(lm._ctx), lm._lib.llama_n_threads_batch(lm._ctx)) == (chosen, 2)
    assert lm.live_sequences == 0 and lm._kept is None  # nothing left in the cache


def test_kept_cells_give_way_to_live_sequences(gguf_path):
    from lmlab.lm.llama_cpp_lm import LlamaCppLM

    lm = LlamaCppLM(gguf_path, context_length=256, max_batch_size=2)
    words = lm.tokenizer.encode(" river bank money tree house" * 60)[:200]
    state = lm.new_state(1)
    lm.forward_each([state], [words])
    lm.release(state)  # 200 of the 256 cells kept
    states = [lm.new_state(1) for _ in range(2)]  # every row free again, the kept one included
    other = lm.tokenizer.encode(" a completely different text" * 60)[:200]
    lm.forward_each(states[:1], [other])  # needs the kept cells: they are dropped, not an error
    assert states[0].length == 200 and lm.live_sequences == 2


def test_a_step_that_finds_the_cache_full_reads_nothing(gguf_path):
    """forward_each is all or nothing: the server frees room and tries the step again."""
    from lmlab.lm.base import CacheFull
    from lmlab.lm.llama_cpp_lm import LlamaCppLM

    lm = LlamaCppLM(gguf_path, context_length=1024, max_batch_size=3)
    g = torch.Generator().manual_seed(0)
    held, first, second = (torch.randint(1000, 40000, (n,), generator=g).tolist()
                           for n in (300, 400, 400))  # fmt: skip
    holder = lm.new_state(1)
    lm.forward_each([holder], [held])
    a, b = lm.new_state(1), lm.new_state(1)
    with pytest.raises(CacheFull):  # a's 400 tokens fit in a first call, b's 400 do not
        lm.forward_each([a, b], [first, second])
    assert a.length == b.length == 0
    lm.release(holder)
    lm.forward_each([a, b], [first, second])  # room now: each read once, not twice
    assert a.length == b.length == 400


def test_rows_of_a_fresh_state_share_the_prefix_the_last_generation_read(fresh_llama_lm):
    lm = fresh_llama_lm
    instructions = lm.tokenizer.encode("Classify each review as positive or negative.\n")
    first, second = (instructions + lm.tokenizer.encode(r) for r in ("Great fun.", "Dull."))
    lmlab.generate(lm, first, max_tokens=3, temperature=0)  # as few-shot classification does
    before = lm.reused_tokens
    state = lm.new_state(2)
    got = lm.forward(state, torch.tensor([second, second]))
    assert lm.reused_tokens - before == 2 * len(instructions) and state.length == len(second)
    lm.release(state)
    expected = _read_alone(lm, second)
    assert all(_same_distribution(row, expected) for row in got)


def test_a_tokenizer_kept_without_its_model_still_works(torch_lm):
    # The vocabulary lives inside llama.cpp's model: when the tokenizer outlived its model,
    # `lmlab tokenize` aborted the process (freed memory). In a child, so a crash is a failure.
    import subprocess
    import sys

    code = (
        "import gc, json, lmlab\n"
        "t = lmlab.load_tokenizer('smollm2-135m-instruct', backend='llama')\n"
        "gc.collect()\n"
        "print(json.dumps(t.encode('hello, hugging face')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == str(torch_lm.tokenizer.encode("hello, hugging face"))


def test_a_seeded_request_repeats_its_samples_whatever_was_read_before(fresh_llama_lm):
    lm = fresh_llama_lm
    system = "You are a careful assistant. Answer in one short sentence.\n"

    def ask(question, n=3, **kw):
        return lmlab.generate(
            lm, system + question, temperature=1.0, max_tokens=16, n=n, ignore_eos=True, **kw
        )

    first = ask("Why is the sky blue?", seed=7)
    before = lm.reused_tokens
    ask("Why is grass green?", n=2)  # unseeded: shares the instructions' cells, leaves holes
    assert lm.reused_tokens > before
    again = ask("Why is the sky blue?", seed=7)
    assert [c.text for c in again.choices] == [c.text for c in first.choices]
    assert [c.text for c in ask("Why is the sky blue?", seed=8).choices] != [
        c.text for c in first.choices
    ]
