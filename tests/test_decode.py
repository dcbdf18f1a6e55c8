"""Decoding against the interface, with the bigram mock (fast, deterministic)."""

import math

import pytest
import torch
from mock_lm import EOS, BigramLM

import lmlab
from lmlab.decode import Detokenizer, generate, generate_stream
from lmlab.errors import LmlabError


def forced(next_of: dict[int, int], eos_after: int | None = None) -> BigramLM:
    """A model that always continues `a` with `next_of[a]` (and EOS after `eos_after`)."""
    table = torch.full((257, 257), -30.0)
    for a, b in next_of.items():
        table[a, b] = 0.0
    if eos_after is not None:
        table[eos_after] = -30.0
        table[eos_after, EOS] = 0.0
    return BigramLM(table)


def cycle(text: str) -> dict[int, int]:
    """Next-byte table that spells `text` over and over."""
    data = text.encode()
    return {data[i]: data[(i + 1) % len(data)] for i in range(len(data))}


def test_greedy_follows_the_argmax_and_stops_at_length():
    lm = forced(cycle("abc"))
    out = generate(lm, "a", temperature=0, max_tokens=7)
    assert out.text == "bcabcab"
    assert out.finish_reason == "length"
    assert out.token_ids == list(b"bcabcab")
    assert out.usage == {"prompt_tokens": 1, "completion_tokens": 7, "total_tokens": 8}


def test_end_of_text_token_stops_with_reason_stop():
    lm = forced(cycle("abc"), eos_after=ord("c"))
    out = generate(lm, "a", temperature=0, max_tokens=50)
    assert out.text == "bc"
    assert out.finish_reason == "stop"
    assert out.token_ids == [ord("b"), ord("c"), EOS]
    assert generate(lm, "a", temperature=0, max_tokens=5, ignore_eos=True).finish_reason == "length"


def test_stop_strings_cut_the_text_and_set_finish_reason():
    lm = forced(cycle("quick brown"))
    out = generate(lm, "q", temperature=0, max_tokens=100, stop=["row"])
    assert out.text == "uick b"
    assert out.finish_reason == "stop"
    # the earliest of several stop strings wins
    assert generate(lm, "q", temperature=0, max_tokens=100, stop=["own", "k b"]).text == "uic"


def test_streaming_holds_back_what_could_start_a_stop_string():
    lm = forced(cycle("quick brown"))
    options = dict(temperature=0, max_tokens=12, stop=["ckx"])
    pieces = list(generate_stream(lm, "q", **options))
    by_token = {chr(p.token_ids[0]): p.text for p in pieces[:6]}
    assert by_token == {"u": "u", "i": "i", "c": "", "k": "", " ": "ck ", "b": "b"}
    text = "".join(p.text for p in pieces)
    assert text == generate(lm, "q", **options).text == "uick brownqu"
    assert pieces[-1].finish_reason == "length"


def test_streamed_pieces_join_to_the_full_text():
    lm = BigramLM()
    full = generate(lm, "x", temperature=0.9, seed=7, max_tokens=40, ignore_eos=True)
    pieces = list(generate_stream(lm, "x", temperature=0.9, seed=7, max_tokens=40, ignore_eos=True))
    assert "".join(p.text for p in pieces) == full.text
    assert [t for p in pieces for t in p.token_ids] == full.token_ids


def test_same_seed_same_sample_and_another_seed_another():
    lm = BigramLM()
    a = generate(lm, "x", temperature=1.0, seed=1, max_tokens=30, ignore_eos=True)
    b = generate(lm, "x", temperature=1.0, seed=1, max_tokens=30, ignore_eos=True)
    c = generate(lm, "x", temperature=1.0, seed=2, max_tokens=30, ignore_eos=True)
    assert a.token_ids == b.token_ids
    assert a.token_ids != c.token_ids


def test_any_integer_is_a_seed():
    # OpenAI's seed is any integer; the generator takes 64 bits (schemathesis found a 500)
    lm = BigramLM()
    huge = -128799389471338322198528
    a = generate(lm, "x", temperature=1.0, seed=huge, n=2, max_tokens=30, ignore_eos=True)
    b = generate(lm, "x", temperature=1.0, seed=huge % 2**64, n=2, max_tokens=30, ignore_eos=True)
    top = generate(lm, "x", temperature=1.0, seed=2**64 - 1, n=2, max_tokens=30, ignore_eos=True)
    assert [c.token_ids for c in a.choices] == [c.token_ids for c in b.choices]
    assert (
        top.choices[1].token_ids
        == generate(lm, "x", temperature=1.0, seed=0, max_tokens=30, ignore_eos=True).token_ids
    )  # sample 1 of the largest seed wraps around to seed 0


def test_n_samples_are_decoded_as_one_batch_and_differ():
    lm = BigramLM()
    out = generate(lm, "x", temperature=1.0, seed=3, n=4, max_tokens=20, ignore_eos=True)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in out.choices}) > 1
    assert lm.calls[0] == (4, 1)  # one prefill of 4 rows
    assert all(call == (4, 1) for call in lm.calls[1:])
    assert out.usage["completion_tokens"] == 80


def test_logprobs_are_the_model_log_probabilities():
    lm = BigramLM()
    out = generate(
        lm, "q", temperature=0, max_tokens=5, logprobs=True, top_logprobs=3, ignore_eos=True
    )
    prev = ord("q")
    for step in out.logprobs:
        expected = torch.log_softmax(lm.table[prev], -1)
        assert step.logprob == pytest.approx(float(expected[step.id]), abs=1e-5)
        assert [t.id for t in step.top_logprobs] == torch.topk(expected, 3).indices.tolist()
        assert step.id == step.top_logprobs[0].id  # greedy picks the top one
        prev = step.id


def test_context_window_bounds_the_generation():
    lm = forced(cycle("ab"))
    lm.context_length = 10
    out = generate(lm, "abab", temperature=0, max_tokens=100)
    assert len(out.token_ids) == 6 and out.finish_reason == "length"
    with pytest.raises(LmlabError, match="context window is 10"):
        generate(lm, "a" * 10, max_tokens=1)


def test_empty_prompt_without_a_start_token_is_an_error():
    with pytest.raises(LmlabError, match="prompt is empty"):
        generate(BigramLM(), "")


def test_detokenizer_never_splits_a_character():
    lm = BigramLM()
    detok = Detokenizer(lm.tokenizer)
    text = "naïve 日本 🙂!"
    pieces = [detok.add(b) for b in text.encode()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_token_id_prompts_are_accepted_and_checked():
    lm = forced(cycle("ab"))
    assert generate(lm, [ord("a")], temperature=0, max_tokens=3).text == "bab"
    with pytest.raises(LmlabError, match="token ids"):
        generate(lm, [999], max_tokens=3)


def test_streaming_validates_before_the_first_piece():
    with pytest.raises(LmlabError, match="temperature"):
        generate_stream(BigramLM(), "a", temperature=-1)


def test_sampled_frequencies_follow_temperature():
    """At temperature T the first token follows softmax(logits / T)."""
    table = torch.zeros(257, 257) - 50
    table[ord("a"), ord("x")] = 0.0
    table[ord("a"), ord("y")] = math.log(3)  # p(y) = 3 p(x) at T = 1
    lm = BigramLM(table)
    for temperature, expected in [(1.0, 0.75), (2.0, math.sqrt(3) / (1 + math.sqrt(3)))]:
        out = generate(lm, "a", temperature=temperature, seed=0, n=64, max_tokens=1)
        firsts = [c.token_ids[0] for c in out.choices] * 1
        share = firsts.count(ord("y")) / len(firsts)
        assert share == pytest.approx(expected, abs=0.15)


def test_tokens_are_chosen_on_one_cpu_thread_and_the_thread_count_comes_back(monkeypatch):
    import lmlab.decode

    seen = []

    def counting_choose(*args):
        seen.append(torch.get_num_threads())
        return choose(*args)

    choose = lmlab.decode.choose
    monkeypatch.setattr(lmlab.decode, "choose", counting_choose)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generate(BigramLM(), "x", temperature=1.0, seed=1, max_tokens=5, ignore_eos=True)
        assert seen == [1] * 5  # a busy CPU makes split passes over one row wait for a core
        assert torch.get_num_threads() == 2  # the model's own work keeps every thread
    finally:
        torch.set_num_threads(before)


def test_evaluating_a_file_with_a_byte_model_reports_no_sentences_or_oov(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("the cat sat\non the mat\n")
    ev = lmlab.evaluate_file(BigramLM(), path)  # a byte model: a token per character
    assert (ev.words, ev.sentences, ev.oov, ev.oov_rate) == (None, None, None, None)
    assert ev.tokens == len("the cat sat\non the mat\n") - 1  # every byte after the first
    assert "sentences" not in repr(ev) and "oov" not in repr(ev)
