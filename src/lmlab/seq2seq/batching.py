"""The encoder side of a batch of token-id sources (padded on the right, each ending with the
end token) and the length bounds a decoder can read: shared by decoding.py and beam.py."""

from __future__ import annotations

import torch


def positions(model) -> int | None:
    """The most positions the model's decoder reads (None: no limit, a recurrent one)."""
    return getattr(getattr(model, "config", None), "context", None)


def within_positions(model, limits: list[int]) -> list[int]:
    """The length bounds, each cut to what the model's decoder can read."""
    cap = positions(model)
    return list(limits) if cap is None else [max(1, min(n, cap - 1)) for n in limits]


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def encode_batch(model, sources: list[list[int]], end_id: int):
    """The encoder's output and mask for token-id sources (each gets the end token, then they
    are right-padded): (memory, keep)."""
    from lmlab.training.objectives.classify import pad

    src, keep = pad([[*s, end_id] for s in sources], end_id)
    device = device_of(model)
    src, keep = src.to(device), keep.to(device)
    return model.encode(src, keep), keep
