"""Beam search and batched greedy decoding on a model whose probabilities the test sets: a
table of next-token logits by (source, position, last token), small enough to search
exhaustively. It offers the encoder-decoder interface (encode, new_cache -> cache with
length and reorder, decode), so this checks the search itself, whatever the network."""

import itertools
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.sampling import SamplingParams
from lmlab.seq2seq.beam import beam_search
from lmlab.seq2seq.decoding import in_batches, sample_batch
from lmlab.seq2seq.search_options import Limits

END, V, LENGTH = 0, 4, 4  # token 0 ends a target; tokens 1..3 are words


class TableCache:
    def __init__(self, which: torch.Tensor) -> None:
        self.which, self.length = which, 0

    def reorder(self, index: torch.Tensor) -> None:
        self.which = self.which[index]


class TableModel(nn.Module):
    """Next-token logits table[source's first token, position, last token]."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = nn.Parameter(2 * torch.randn(V, LENGTH + 1, V, V, generator=g))
        self.config = SimpleNamespace(vocab_size=V, context=None)
        self.logp = torch.log_softmax(self.table.detach(), dim=-1)

    def encode(self, src, keep):
        return src[:, :1, None].float()  # (B, 1, 1): which row of the table

    def new_cache(self, memory, keep):
        return TableCache(memory[:, 0, 0].long())

    def decode(self, tgt, memory=None, keep=None, cache=None, *, last_only=False):
        logits = self.table[cache.which, cache.length, tgt[:, -1]]
        cache.length += tgt.shape[1]
        return logits[:, None].detach()

    def log_prob(self, source: int, tokens: list[int]) -> float:
        logp = self.logp
        previous, total = END, 0.0
        for position, token in enumerate(tokens):
            total += float(logp[source, position, previous, token])
            previous = token
        return total


def exhaustive_best(model: TableModel, source: int, alpha: float) -> tuple[list[int], float]:
    """Every target of at most LENGTH tokens: words then the end token, or LENGTH words cut."""
    best, best_score = None, -math.inf
    for n in range(LENGTH + 1):
        for words in itertools.product(range(1, V), repeat=n):
            scored = [*words, END] if n < LENGTH else list(words)
            score = model.log_prob(source, scored) / ((5 + len(scored)) / 6) ** alpha
            if score > best_score:
                best, best_score = list(words), score
    return best, best_score


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_wide_beam_finds_the_best_length_penalised_target(seed, alpha):
    model = TableModel(seed)
    sources = [[1], [2], [3]]
    found = beam_search(model, sources, END, [LENGTH] * 3, beam=128, alpha=alpha)
    for source, hypothesis in zip(sources, found, strict=True):
        tokens, score = exhaustive_best(model, source[0], alpha)
        assert hypothesis.tokens == tokens
        assert hypothesis.score == pytest.approx(score, abs=1e-4)
        ended = len(tokens) < LENGTH
        scored = [*tokens, END] if ended else tokens
        assert hypothesis.log_prob == pytest.approx(model.log_prob(source[0], scored), abs=1e-4)


def test_the_length_penalty_changes_the_winner_somewhere():
    """The exhaustive check above would pass for a search that ignored alpha if no table here
    had a different best target under another alpha."""
    winners = {
        seed: {tuple(exhaustive_best(TableModel(seed), s, a)[0]) for a in (0.0, 2.0)}
        for seed in range(3)
        for s in (1, 2, 3)
    }
    assert any(len(w) > 1 for w in winners.values())


@pytest.mark.parametrize("seed", range(4))
def test_beam_one_is_greedy(seed):
    model = TableModel(seed)
    sources = [[1], [2], [3], [2]]
    limits = [4, 3, 4, 1]
    greedy = sample_batch(model, sources, END, limits, SamplingParams(temperature=0))
    beam = beam_search(model, sources, END, limits, beam=1, alpha=0.6)
    assert [h.tokens for h in beam] == greedy
    assert all(len(g) <= n for g, n in zip(greedy, limits, strict=True))


@pytest.mark.parametrize("beam", [2, 3, 5])
def test_a_batch_searches_as_each_source_alone(beam):
    model = TableModel(7)
    sources = [[1], [2], [3], [1], [2]]
    limits = [4, 2, 3, 1, 4]
    together = beam_search(model, sources, END, limits, beam=beam)
    pairs = zip(sources, limits, strict=True)
    alone = [beam_search(model, [s], END, [n], beam=beam)[0] for s, n in pairs]
    assert [h.tokens for h in together] == [h.tokens for h in alone]
    assert [h.score for h in together] == pytest.approx([h.score for h in alone])


def test_in_batches_keeps_the_order_given():
    model = TableModel(3)
    sources = [[3, 3, 3], [1], [2, 2]]  # sorted by length inside; returned as given
    limits = [4, 4, 4]
    greedy = SamplingParams(temperature=0)
    out = in_batches(model, sources, END, limits, beam=1, alpha=0.6, params=greedy, batch_size=2)
    assert out == [sample_batch(model, [s], END, [4], greedy)[0] for s in sources]


def test_sampling_is_repeatable_with_a_seed_and_follows_the_model():
    model = TableModel(5)
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                            repetition_penalty=1.0)  # fmt: skip

    def draw(seed):
        return sample_batch(model, [[1]] * 400, END, [1] * 400, params,
                            torch.Generator().manual_seed(seed))  # fmt: skip

    assert draw(1) == draw(1)
    first = [row[0] if row else END for row in draw(2)]
    expected = torch.softmax(model.table.detach()[1, 0, END], dim=-1)
    observed = torch.bincount(torch.tensor(first), minlength=V) / len(first)
    assert torch.allclose(observed, expected, atol=0.08)


def test_the_length_bound():
    assert Limits().of(5, None) == 20  # 2 x 5 + 10
    assert Limits(1.5, 3).of(4, None) == 9
    assert Limits(max_tokens=7).of(50, None) == 7
    assert Limits().of(50, 64) == 63  # never past the model's positions
    with pytest.raises(LmlabError, match="max-tokens must be at least 1"):
        Limits(max_tokens=0)
    with pytest.raises(LmlabError, match="beam must be at least 1"):
        beam_search(TableModel(0), [[1]], END, [3], beam=0)
