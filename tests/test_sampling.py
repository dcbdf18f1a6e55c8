"""Logit transforms: hand-made distributions, and Hugging Face's processors as the reference."""

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from lmlab.errors import LmlabError
from lmlab.sampling import (
    SamplingParams,
    apply_penalties,
    choose,
    draw,
    filter_min_p,
    filter_top_k,
    filter_top_p,
)
from lmlab.sampling_defaults import OPENAI

PROBS = torch.tensor([[0.05, 0.40, 0.10, 0.25, 0.20]])  # sorted: 1, 3, 4, 2, 0


def openai(**options) -> SamplingParams:
    """Parameters as the transforms take them: every field filled, here with OpenAI's values
    (temperature 1, filters off) for the fields not given."""
    return SamplingParams(**options).with_defaults(OPENAI)


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits[0])).flatten().tolist())


@pytest.mark.parametrize(
    ("top_p", "nucleus"),
    [
        (0.3, {1}),
        (0.5, {1, 3}),
        (0.6, {1, 3}),
        (0.7, {1, 3, 4}),
        (0.9, {1, 3, 4, 2}),
        (1.0, {0, 1, 2, 3, 4}),
    ],
)
def test_top_p_keeps_exactly_the_nucleus(top_p, nucleus):
    assert kept(filter_top_p(PROBS.log(), top_p)) == nucleus


def test_top_k_and_min_p_on_a_hand_made_distribution():
    assert kept(filter_top_k(PROBS.log(), 2)) == {1, 3}
    assert kept(filter_top_k(PROBS.log(), 0)) == {0, 1, 2, 3, 4}
    # min_p 0.45: keep tokens with p >= 0.45 * 0.40 = 0.18
    assert kept(filter_min_p(PROBS.log(), 0.45)) == {1, 3, 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filters_match_transformers_warpers(seed):
    logits = torch.randn(3, 1000, generator=torch.Generator().manual_seed(seed)) * 4
    ids = torch.zeros(3, 1, dtype=torch.long)
    for ours, theirs in [
        (filter_top_k(logits, 50), TopKLogitsWarper(50)(ids, logits.clone())),
        (filter_top_p(logits, 0.8), TopPLogitsWarper(0.8)(ids, logits.clone())),
        (filter_min_p(logits, 0.1), MinPLogitsWarper(0.1)(ids, logits.clone())),
    ]:
        assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))


@pytest.mark.parametrize("scale", [0.05, 1.0, 8.0])
def test_top_p_matches_transformers_when_the_nucleus_is_large(scale):
    # A flat distribution over a 49k vocabulary puts most tokens in the nucleus: the ranking
    # must widen past its first 64 candidates and still keep exactly the nucleus.
    logits = torch.randn(2, 49152, generator=torch.Generator().manual_seed(5)) * scale
    logits[1] *= 0.1  # rows of different widths in one batch
    ids = torch.zeros(2, 1, dtype=torch.long)
    for top_p in (0.5, 0.95):
        ours = filter_top_p(logits, top_p)
        theirs = TopPLogitsWarper(top_p)(ids, logits.clone())
        assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))


def test_repetition_penalty_matches_transformers():
    logits = torch.randn(2, 50, generator=torch.Generator().manual_seed(3)) * 3
    history = torch.tensor([[1, 5, 5, 7], [2, 3, 4, 49]])
    seen = torch.zeros(2, 50, dtype=torch.bool).scatter(1, history, True)
    p = openai(repetition_penalty=1.3)
    ours = apply_penalties(logits, seen, torch.zeros(2, 50), p)
    theirs = RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone())
    assert torch.allclose(ours, theirs)


def test_presence_and_frequency_penalties_follow_openai():
    logits = torch.zeros(1, 4)
    counts = torch.tensor([[0.0, 1.0, 3.0, 0.0]])
    p = openai(presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(logits, counts > 0, counts, p)
    assert out.tolist() == [[0.0, -0.75, -1.25, 0.0]]


def test_top_k_one_and_temperature_zero_are_greedy():
    logits = torch.randn(8, 300, generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(0)
    greedy = logits.argmax(-1)
    assert torch.equal(choose(logits, openai(temperature=0), gen), greedy)
    assert torch.equal(choose(logits, openai(top_k=1, temperature=1.5), gen), greedy)


def test_sampling_follows_the_distribution():
    gen = torch.Generator().manual_seed(0)
    logits = PROBS.log().repeat(20000, 1)
    draws = choose(logits, openai(temperature=1.0), gen)
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert torch.allclose(freq, PROBS[0], atol=0.015)
    nucleus = choose(logits, openai(top_p=0.5), gen)
    assert set(nucleus.tolist()) == {1, 3}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_k", -1),
        ("max_tokens", 0),
        ("n", 0),
        ("min_p", 2.0),
        ("presence_penalty", 3.0),
        ("top_logprobs", 21),
    ],
)
def test_bad_parameters_name_the_parameter(option, value):
    with pytest.raises(LmlabError, match=option) as info:
        SamplingParams.from_options({option: value})
    assert info.value.param == option


def test_unknown_option_is_an_error():
    with pytest.raises(LmlabError, match="unknown option 'temprature'"):
        SamplingParams.from_options({"temprature": 0.5})


def test_extreme_parameters_still_choose_a_token():
    """Overflowing penalties and temperatures must not crash the draw (found by schemathesis)."""
    logits = torch.randn(2, 100, generator=torch.Generator().manual_seed(5)) * 5
    seen = torch.ones(2, 100, dtype=torch.bool)
    gen = torch.Generator().manual_seed(0)
    for options in [
        dict(temperature=5e-324),
        dict(temperature=1.0, repetition_penalty=5e-324),
        dict(temperature=2.0, repetition_penalty=5e-324, top_p=5e-324, min_p=1.0),
    ]:
        p = openai(**options)
        ids = choose(apply_penalties(logits, seen, torch.zeros(2, 100), p), p, gen)
        assert ids.shape == (2,) and ((ids >= 0) & (ids < 100)).all()


def test_draw_inverts_the_cumulative_distribution_over_a_large_vocabulary():
    """Only tokens with probability are drawn, at their rates, whatever the vocabulary's size."""
    probs = torch.zeros(49152)
    probs[[7, 20000, 49151]] = torch.tensor([0.2, 0.5, 0.3])  # the last id too: no off-by-one
    gen = torch.Generator().manual_seed(1)
    ids = draw(probs.repeat(20000, 1), gen)
    freq = torch.bincount(ids, minlength=49152).float() / len(ids)
    assert set(ids.tolist()) == {7, 20000, 49151}
    assert freq[[7, 20000, 49151]].tolist() == pytest.approx([0.2, 0.5, 0.3], abs=0.015)
    nothing = torch.full((1, 5), float("nan"))  # no finite probability left: still a valid id
    assert 0 <= int(draw(nothing, gen)[0]) < 5
