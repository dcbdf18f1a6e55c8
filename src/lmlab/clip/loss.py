"""The symmetric InfoNCE loss of CLIP (Radford et al. 2021, Figure 3; van den Oord et al. 2018).

For a batch of B image vectors I and B text vectors T, both L2-normalised, the logits are
s * I T^T with s = exp(t), a learned inverse temperature. Each row is a B-way classification of
which text belongs to the image, each column of which image belongs to the text; the loss is the
mean of the two cross-entropies.

Captions made from labels repeat: several images of a batch share a class, and their captions
describe each other's images as well as their own. With `groups` (the class of each pair), every
text of the image's group is a positive: the target of a row is uniform over them (the
multi-positive form of Khosla et al. 2020 and UniCL, Yang et al. 2022); without, the diagonal.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def info_nce_targets(groups: torch.Tensor | None, n: int, device=None) -> torch.Tensor:
    """(n, n) target distributions: the identity, or uniform over each row's group."""
    if groups is None:
        return torch.eye(n, device=device)
    same = (groups[:, None] == groups[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def symmetric_info_nce(
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """The symmetric InfoNCE loss of B aligned pairs (a scalar).

    Args:
        image, text: (B, d) L2-normalised vectors; row i of each is the i-th pair.
        logit_scale: log of the inverse temperature (exp is taken here).
        groups: (B,) the class of each pair, when pairs of one class are all positives.

    Example:
        >>> v = torch.eye(3)
        >>> symmetric_info_nce(v, v, torch.tensor(0.0))   # 1 - log-softmax of [1, 0, 0]
        tensor(0.5514)
    """
    logits = logit_scale.exp() * image @ text.T  # (B, B): images x texts
    targets = info_nce_targets(groups, len(image), image.device)
    # With groups the relation is symmetric, so the same targets serve both directions.
    by_image = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    by_text = -(targets.T * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    return (by_image + by_text) / 2
