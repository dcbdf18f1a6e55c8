"""Sequence classification: cross-entropy of a model's class logits, net(*inputs) -> (B, K).

Two batch sources: texts of similar length padded together (a fine-tuned encoder), and rows of
fixed vectors in a new random order every epoch (a head on frozen embeddings, the mlp probe).
Validation, when given, is the mean cross-entropy and the accuracy on held-out batches.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from lmlab.training.objective import NoLogMetrics

POOL_BATCHES = 50  # batches per pool in which texts are sorted by length


def length_sorted_epoch(
    ids: Sequence[Sequence[int]],
    batch_size: int,
    rng: random.Random,
    pool_batches: int = POOL_BATCHES,
    *,
    lengths: Sequence[int] | None = None,
) -> list[list[int]]:
    """One epoch of batches (row numbers): shuffled, sorted by length within pools of
    `pool_batches` batches (little padding), the batches in random order.

    `lengths`: what to sort row i by, when not len(ids[i]) (a pair's two lengths summed)."""
    lengths = lengths if lengths is not None else [len(row) for row in ids]
    pool = batch_size * pool_batches
    order = list(range(len(ids)))
    rng.shuffle(order)
    batches = []
    for first in range(0, len(order), pool):
        chunk = sorted(order[first : first + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and the attention mask (B, T)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


class LengthBatches:
    """Epoch after epoch, padded batches of token ids of similar length: ((ids, mask), labels)."""

    def __init__(
        self, ids: list[list[int]], labels: torch.Tensor, batch_size: int, pad_id: int, seed: int
    ) -> None:
        self.ids, self.labels, self.batch_size, self.pad_id = ids, labels, batch_size, pad_id
        self.rng = random.Random(seed)
        self.epoch: list[list[int]] = []  # this epoch's batches (replaced, never changed)
        self.position = 0  # the next batch of the epoch
        self.seen = 0  # texts read so far

    def next(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        if self.position >= len(self.epoch):
            self.epoch, self.position = length_sorted_epoch(self.ids, self.batch_size, self.rng), 0
        rows = self.epoch[self.position]
        self.position, self.seen = self.position + 1, self.seen + len(rows)
        return pad([self.ids[i] for i in rows], self.pad_id), self.labels[rows]

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "epoch": self.epoch, "position": self.position,
                "seen": self.seen}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.epoch, self.position, self.seen = state["epoch"], state["position"], state["seen"]


class ShuffledRows:
    """Epoch after epoch, `rows` of (X, Y) in a new random order, cut into batches (the last
    one smaller): ((X[batch],), Y[batch])."""

    def __init__(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        rows: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        self.X, self.Y, self.rows, self.batch_size = X, Y, rows, batch_size
        self.generator = generator
        self.epoch: tuple[torch.Tensor, ...] = ()
        self.position = 0
        self.seen = 0

    def next(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        if self.position >= len(self.epoch):
            order = self.rows[torch.randperm(len(self.rows), generator=self.generator)]
            self.epoch, self.position = order.split(self.batch_size), 0
        batch = self.epoch[self.position]
        self.position, self.seen = self.position + 1, self.seen + len(batch)
        return (self.X[batch],), self.Y[batch]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch,
                "position": self.position, "seen": self.seen}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.position, self.seen = state["epoch"], state["position"], state["seen"]


class SequenceClassification(NoLogMetrics):
    """Cross-entropy of the class logits of a batch source's inputs.

    Args:
        source: LengthBatches or ShuffledRows (anything with next() -> (inputs, labels) and
            state_dict / load_state_dict).
        device: where the model is.
        units_per_batch: texts per batch, for the speed.
        valid: held-out batches [(inputs, labels)], or None.
    """

    def __init__(
        self,
        source,
        device: torch.device,
        *,
        units_per_batch: int,
        valid: list[tuple[tuple[torch.Tensor, ...], torch.Tensor]] | None = None,
    ) -> None:
        self.source, self.device, self.valid = source, device, valid
        self.units_per_batch = units_per_batch
        self.validates = bool(valid)

    def loss(self, net: nn.Module) -> torch.Tensor:
        inputs, labels = self.source.next()
        logits = net(*(x.to(self.device) for x in inputs))
        return nn.functional.cross_entropy(logits.float(), labels.to(self.device))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        was_training = model.training
        model.eval()
        losses, right, count = [], 0, 0
        for inputs, labels in self.valid:
            logits = model(*(x.to(self.device) for x in inputs)).float()
            labels = labels.to(self.device)
            losses.append((nn.functional.cross_entropy(logits, labels).item(), len(labels)))
            right += int((logits.argmax(-1) == labels).sum())
            count += len(labels)
        model.train(was_training)
        # one batch: its mean as it is (a sum of means, reweighted, would differ in the last bit)
        loss = losses[0][0] if len(losses) == 1 else sum(m * n for m, n in losses) / count
        return {"valid_loss": loss, "valid_accuracy": right / count}

    def state_dict(self) -> dict:
        return {"batches": self.source.state_dict(), "cache": None}

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state["batches"])
