"""Sequence to sequence: maximum likelihood of a target given its source, by teacher forcing.

A pair (x, y) of token ids becomes the source x + [end], the decoder's input [end] + y and its
labels y + [end]: the model reads the whole source and the target so far, and is scored by the
cross-entropy of each next target token (one special token, the tokenizer's end of text,
starts a target and ends a source and a target). Pairs are batched with others of similar
length (sorted within pools of batches, as the classifier's texts), right-padded; padding is
never attended in the source and never scored in the target. Label smoothing (Szegedy et al.
2016; 0.1 in Vaswani et al. 2017) is a training option; validation reports the plain
cross-entropy of the references' tokens and its perplexity.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn

from lmlab.training.objective import NoLogMetrics
from lmlab.training.objectives.classify import length_sorted_epoch, pad

IGNORE = -100  # the label of padding (cross_entropy's ignore_index)


def pair_batch(
    sources: list[list[int]], targets: list[list[int]], end_id: int, start_id: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded (source ids, source mask, decoder input ids, labels), each (B, S) or (B, T);
    targets start from `start_id` (default: the end token, as lmlab trains)."""
    start = end_id if start_id is None else start_id
    src, keep = pad([[*s, end_id] for s in sources], end_id)
    tgt_in, _ = pad([[start, *t] for t in targets], end_id)
    labels, scored = pad([[*t, end_id] for t in targets], IGNORE)
    return src, keep, tgt_in, labels.masked_fill(scored == 0, IGNORE)


class PairBatches:
    """Epoch after epoch, padded batches of pairs of similar length (see pair_batch), with a
    position that checkpoints can restore."""

    def __init__(
        self,
        sources: list[list[int]],
        targets: list[list[int]],
        batch_size: int,
        end_id: int,
        seed: int,
    ) -> None:
        self.sources, self.targets, self.end_id = sources, targets, end_id
        self.batch_size = batch_size
        self.lengths = [len(s) + len(t) for s, t in zip(sources, targets, strict=True)]
        self.rng = random.Random(seed)
        self.epoch: list[list[int]] = []  # this epoch's batches (replaced, never changed)
        self.position = 0  # the next batch of the epoch

    def next(self) -> tuple[torch.Tensor, ...]:
        if self.position >= len(self.epoch):
            self.epoch = length_sorted_epoch(
                self.sources, self.batch_size, self.rng, lengths=self.lengths
            )
            self.position = 0
        rows = self.epoch[self.position]
        self.position += 1
        return pair_batch([self.sources[i] for i in rows], [self.targets[i] for i in rows],
                          self.end_id)  # fmt: skip

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.epoch, self.position = state["epoch"], state["position"]


def validation_batches(
    sources: list[list[int]], targets: list[list[int]], batch_size: int, end_id: int
) -> list[tuple[torch.Tensor, ...]]:
    """Held-out pairs in batches of similar length, in a fixed order (the first ones are the
    quick estimate's): sorted by length within pools, as training, with a fixed seed."""
    lengths = [len(s) + len(t) for s, t in zip(sources, targets, strict=True)]
    rows = length_sorted_epoch(sources, batch_size, random.Random(0), lengths=lengths)
    return [pair_batch([sources[i] for i in r], [targets[i] for i in r], end_id) for r in rows]


class Seq2Seq(NoLogMetrics):
    """Cross-entropy of the target tokens of source-target pairs, by teacher forcing.

    Args:
        batches: PairBatches of the training pairs.
        valid: validation_batches of the held-out pairs, or None.
        device: where the model is.
        label_smoothing: the share of probability spread over the vocabulary in training's
            targets (0: plain maximum likelihood); validation never smooths.
        eval_batches: batches of the quick periodic validation estimate (the final one reads
            them all).
    """

    def __init__(
        self,
        batches: PairBatches,
        valid: list[tuple[torch.Tensor, ...]] | None,
        device: torch.device,
        *,
        label_smoothing: float = 0.0,
        eval_batches: int = 20,
    ) -> None:
        self.batches, self.valid, self.device = batches, valid, device
        self.label_smoothing, self.eval_batches = label_smoothing, eval_batches
        self.validates = bool(valid)
        mean = sum(len(t) + 1 for t in batches.targets) / max(len(batches.targets), 1)
        self.units_per_batch = round(batches.batch_size * mean)  # target tokens, on average

    def loss(self, net: nn.Module) -> torch.Tensor:
        src, keep, tgt_in, labels = (x.to(self.device) for x in self.batches.next())
        logits = net(src, keep, tgt_in)
        return nn.functional.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
            label_smoothing=self.label_smoothing,
        )  # fmt: skip

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for batch in self.valid if full else self.valid[: self.eval_batches]:
            src, keep, tgt_in, labels = (x.to(self.device) for x in batch)
            logits = model(src, keep, tgt_in)
            total += nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
                reduction="sum",
            ).item()  # fmt: skip
            count += int((labels != IGNORE).sum())
        model.train(was_training)
        loss = total / max(count, 1)
        return {"valid_loss": loss, "valid_perplexity": math.exp(loss)}

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict(), "cache": None}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
