"""The sequence-to-sequence objective: batches of pairs, teacher forcing, padding ignored,
label smoothing, validation, and its position saved and restored."""

import math
import random

import pytest
import torch

from lmlab.lm.neural.transformer import Transformer, TransformerConfig
from lmlab.training.objectives.seq2seq import (
    IGNORE,
    PairBatches,
    Seq2Seq,
    pair_batch,
    validation_batches,
)

END = 0


def pairs(n, seed=0):
    rng = random.Random(seed)
    sources = [[rng.randrange(1, 30) for _ in range(rng.randrange(1, 12))] for _ in range(n)]
    targets = [[rng.randrange(1, 30) for _ in range(rng.randrange(1, 12))] for _ in range(n)]
    return sources, targets


def model():
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=30, context=32, n_encoder_layer=1, n_decoder_layer=1,
                               n_head=2, n_embd=16, dropout=0.0)  # fmt: skip
    return Transformer(config)


def test_a_pair_batch_is_teacher_forcing_with_padding_unscored():
    src, keep, tgt_in, labels = pair_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13]], END)
    assert src.tolist() == [[5, 6, 7, END], [8, END, END, END]]
    assert keep.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert tgt_in.tolist() == [[END, 9, 10, END], [END, 11, 12, 13]]
    assert labels.tolist() == [[9, 10, END, IGNORE], [11, 12, 13, END]]


def test_batches_hold_pairs_of_similar_length_and_cover_an_epoch():
    sources, targets = pairs(400)
    batches = PairBatches(sources, targets, 8, END, seed=1)
    seen, spread = [], []
    for _ in range(50):  # one epoch
        src, keep, _, labels = batches.next()
        seen.append(src.shape[0])
        lengths = keep.sum(1) + (labels != IGNORE).sum(1)
        spread.append(int(lengths.max() - lengths.min()))
    assert sum(seen) == 400
    assert max(spread) <= 4  # sorted within pools: a random batch of 8 spreads ~12


def test_padding_is_neither_attended_nor_scored():
    net = model().eval()
    sources, targets = pairs(6)
    one_by_one = [
        validation_batches([s], [t], 1, END) for s, t in zip(sources, targets, strict=True)
    ]
    together = validation_batches(sources, targets, 6, END)
    sums = []
    for batches in one_by_one:
        result = Seq2Seq(PairBatches(sources, targets, 6, END, 0), batches, torch.device("cpu"))
        tokens = int((batches[0][3] != IGNORE).sum())
        sums.append((result.evaluate(net, full=True)["valid_loss"] * tokens, tokens))
    joint = Seq2Seq(PairBatches(sources, targets, 6, END, 0), together, torch.device("cpu"))
    expected = sum(s for s, _ in sums) / sum(n for _, n in sums)
    got = joint.evaluate(net, full=True)
    assert got["valid_loss"] == pytest.approx(expected, rel=1e-5)
    assert got["valid_perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_label_smoothing_changes_the_training_loss_not_the_validation():
    net = model()
    sources, targets = pairs(16)
    valid = validation_batches(sources, targets, 8, END)
    losses = []
    for smoothing in (0.0, 0.1):
        batches = PairBatches(sources, targets, 8, END, seed=3)
        objective = Seq2Seq(batches, valid, torch.device("cpu"), label_smoothing=smoothing)
        losses.append((objective.loss(net).item(), objective.evaluate(net, full=True)))
    assert losses[0][0] != pytest.approx(losses[1][0])
    assert losses[0][1] == losses[1][1]
    assert objective.units_per_batch > 8  # target tokens, not pairs


def test_the_position_is_saved_and_restored():
    sources, targets = pairs(50)
    batches = PairBatches(sources, targets, 8, END, seed=2)
    for _ in range(9):  # into the second epoch
        batches.next()
    state = batches.state_dict()
    ahead = [batches.next() for _ in range(8)]
    other = PairBatches(sources, targets, 8, END, seed=99)
    other.load_state_dict(state)
    again = [other.next() for _ in range(8)]
    for x, y in zip(ahead, again, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(x, y, strict=True))
