"""Contrastive objectives on a pooled encoder, net(ids, mask) -> one vector per text (B, C).

  simcse   unsupervised SimCSE (Gao et al. 2021): every sentence of the batch twice through the
           encoder in one forward pass, so that dropout makes two views of it; InfoNCE with the
           other sentences of the batch as negatives.
  mnr      positive pairs (and hard negatives): InfoNCE of text1 against every text2 of the
           batch (and every hard negative).
  cosent   scored pairs: CoSENT on the cosines of the pairs, ordered by their scores.
All texts of a micro-batch go through the encoder in one forward pass. Batches hold rows of
similar total length (sorted within random pools of batches, as the classifier's), so little of
a batch is padding. Validation, when given STS pairs, is their Spearman correlation:
valid_loss = 1 - rho, so that early stopping keeps the best weights by it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lmlab.contrastive.losses import cosent, info_nce
from lmlab.training.objective import NoLogMetrics
from lmlab.training.objectives.classify import length_sorted_epoch, pad

MODES = ("simcse", "mnr", "cosent")


class RowBatches:
    """Epoch after epoch, batches of row numbers of similar total length, in random order."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50
    ) -> None:
        self.lengths, self.batch_size, self.pool_batches = list(lengths), batch_size, pool_batches
        self.rng = random.Random(seed)
        self.epoch: list[list[int]] = []
        self.position = 0
        self.seen = 0

    def next(self) -> list[int]:
        while self.position >= len(self.epoch):
            epoch = length_sorted_epoch(self.lengths, self.batch_size, self.rng,
                                        self.pool_batches, lengths=self.lengths)  # fmt: skip
            # a batch of one row has no negatives: leave such a remainder out of the epoch
            self.epoch, self.position = [b for b in epoch if len(b) > 1], 0
        rows = self.epoch[self.position]
        self.position, self.seen = self.position + 1, self.seen + len(rows)
        return rows

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "epoch": self.epoch, "position": self.position,
                "seen": self.seen}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state["rng"])
        self.epoch, self.position, self.seen = state["epoch"], state["position"], state["seen"]


class Contrastive(NoLogMetrics):
    """The loss of one contrastive mode over batches of token-id rows.

    Args:
        mode: simcse, mnr or cosent.
        columns: token ids per column: [sentences] (simcse), [text1, text2] or
            [text1, text2, hard negatives] (mnr), [text1, text2] (cosent).
        scores: the pairs' scores (cosent).
        source: RowBatches over the rows.
        pad_id: the padding id of the encoder.
        device: where the model is.
        temperature: InfoNCE's (simcse, mnr); scale: CoSENT's (20, 1 / 0.05).
        valid: STS pairs to validate on: (ids of text1, ids of text2, scores), or None.
    """

    def __init__(
        self,
        mode: str,
        columns: list[list[list[int]]],
        source: RowBatches,
        pad_id: int,
        device: torch.device,
        *,
        scores: Sequence[float] | None = None,
        temperature: float = 0.05,
        scale: float = 20.0,
        valid: tuple[list[list[int]], list[list[int]], Sequence[float]] | None = None,
    ) -> None:
        self.mode, self.columns, self.source, self.pad_id = mode, columns, source, pad_id
        self.device, self.temperature, self.scale = device, temperature, scale
        self.scores = None if scores is None else torch.tensor(scores, dtype=torch.float32)
        self.valid = valid
        self.validates = valid is not None
        self.units_per_batch = source.batch_size  # sentences (simcse) or pairs per batch

    def loss(self, net: nn.Module) -> torch.Tensor:
        rows = self.source.next()
        if self.mode == "simcse":
            texts = [self.columns[0][i] for i in rows] * 2  # two dropout views of each
        else:
            texts = [column[i] for column in self.columns for i in rows]
        ids, mask = pad(texts, self.pad_id)
        vectors = net(ids.to(self.device), mask.to(self.device)).split(len(rows))
        if self.mode == "cosent":
            return cosent(vectors[0], vectors[1], self.scores[rows].to(self.device),
                          scale=self.scale)  # fmt: skip
        negatives = vectors[2] if len(vectors) > 2 else None
        return info_nce(vectors[0], vectors[1], negatives, temperature=self.temperature)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        from scipy.stats import spearmanr

        was_training = model.training
        model.eval()
        first, second, gold = self.valid
        a = embed_ids(model, first, self.pad_id, self.device)
        b = embed_ids(model, second, self.pad_id, self.device)
        model.train(was_training)
        cos = nn.functional.cosine_similarity(a, b, dim=-1).numpy()
        rho = float(spearmanr(cos, np.asarray(gold)).statistic)
        return {"valid_loss": 1.0 - rho, "valid_spearman": 100 * rho}

    def state_dict(self) -> dict:
        return {"batches": self.source.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.source.load_state_dict(state["batches"])


@torch.no_grad()
def embed_ids(
    model: nn.Module, ids: list[list[int]], pad_id: int, device: torch.device, batch: int = 64
) -> torch.Tensor:
    """The pooled vectors (N, C), on the CPU in float32, of token-id rows, in batches of
    similar length."""
    order = np.argsort([len(r) for r in ids], kind="stable")
    parts = []
    for start in range(0, len(ids), batch):
        rows = order[start : start + batch]
        x, mask = pad([ids[i] for i in rows], pad_id)
        parts.append((rows, model(x.to(device), mask.to(device)).float().cpu()))
    out = torch.empty(len(ids), parts[0][1].shape[1])
    for rows, vectors in parts:
        out[torch.as_tensor(rows)] = vectors
    return out
