"""Supervised fine-tuning on conversations: next-token cross-entropy on the assistant's tokens
only (the mask from posttrain/data.py), averaged over those tokens in the batch.

Batches hold rows of similar lengths (little padding): each epoch the rows are sorted by length
(ties in a random order), cut into batches, and the batches visited in a random order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lmlab.training.objective import NoLogMetrics


class LengthBatches:
    """Batches of row indices of similar lengths, in a seeded order that checkpoints restore."""

    def __init__(self, lengths: Sequence[int], batch: int, seed: int) -> None:
        self.lengths, self.batch = list(lengths), batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[list[int]] = []
        self.position = 0

    def _new_epoch(self) -> None:
        ties = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        rows = sorted(range(len(self.lengths)), key=lambda i: (self.lengths[i], ties[i]))
        chunks = [rows[i : i + self.batch] for i in range(0, len(rows), self.batch)]
        shuffle = torch.randperm(len(chunks), generator=self.generator).tolist()
        self.order, self.position = [chunks[i] for i in shuffle], 0

    def next(self) -> list[int]:
        if self.position >= len(self.order):
            self._new_epoch()
        self.position += 1
        return self.order[self.position - 1]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": [list(b) for b in self.order],
                "position": self.position}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.position = [list(b) for b in state["order"]], state["position"]


def pad(rows: Sequence, pad_id: int, device: torch.device):
    """(ids, attention, mask) of Encoded rows, right-padded to the longest (B, T) each."""
    T = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), T), dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r.ids)] = torch.tensor(r.ids)
        attention[i, : len(r.ids)] = 1
        mask[i, : len(r.mask)] = torch.tensor(r.mask)
    return ids.to(device), attention.to(device), mask.to(device)


def validation_order(rows: Sequence, batch: int) -> list[list[int]]:
    """Validation batches: rows sorted by length, cut in batches (the same every time)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    return [order[i : i + batch] for i in range(0, len(order), batch)]


class SFT(NoLogMetrics):
    """Cross-entropy of the assistant tokens of conversations (posttrain/data.Encoded rows)."""

    def __init__(self, model: nn.Module, rows, valid_rows, batch: int, pad_id: int,
                 device: torch.device, *, seed: int, eval_batches: int) -> None:  # fmt: skip
        self.model, self.rows, self.valid_rows = model, rows, valid_rows or []
        self.pad_id, self.device, self.eval_batches = pad_id, device, eval_batches
        self.batches = LengthBatches([len(r.ids) for r in rows], batch, seed)
        self.validates = bool(self.valid_rows)
        self.units_per_batch = batch  # conversations
        self.valid_order = validation_order(self.valid_rows, batch)

    def loss(self, net: nn.Module) -> torch.Tensor:
        from lmlab.posttrain.model import token_logps

        batch = [self.rows[i] for i in self.batches.next()]
        return -token_logps(net, *pad(batch, self.pad_id, self.device)).mean()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        from lmlab.posttrain.model import token_logps

        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        order = self.valid_order if full else self.valid_order[: self.eval_batches]
        for rows in order:
            logp = token_logps(model, *pad([self.valid_rows[i] for i in rows], self.pad_id,
                                           self.device))  # fmt: skip
            total, count = total - logp.sum().item(), count + logp.numel()
        model.train(was_training)
        loss = total / max(count, 1)
        return {"valid_loss": loss, "valid_perplexity": math.exp(loss)}

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
