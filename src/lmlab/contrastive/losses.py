"""The contrastive losses, on sentence vectors (rows) of one batch.

info_nce   in-batch negatives (InfoNCE; sentence-transformers' MultipleNegativesRankingLoss):
           row i of `anchors` should be nearer, by cosine / temperature, to row i of
           `positives` than to every other row of `positives` (and of `negatives`, when
           given: hard negatives). SimCSE (Gao et al. 2021) is this loss on two dropout views
           of the same sentences, with temperature 0.05.
cosent     CoSENT (Su 2022): for every two pairs whose gold scores are ordered s_i > s_j,
           log(1 + sum exp(scale * (cos_j - cos_i))): only the order of the scores counts,
           so scores may be on any scale.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Cross-entropy of picking each anchor's own positive among all candidates of the batch."""
    candidates = positives if negatives is None else torch.cat([positives, negatives])
    a = F.normalize(anchors.float(), dim=-1)
    c = F.normalize(candidates.float(), dim=-1)
    logits = a @ c.T / temperature  # (B, B or 2B)
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def cosent(
    first: torch.Tensor, second: torch.Tensor, scores: torch.Tensor, *, scale: float = 20.0
) -> torch.Tensor:
    """CoSENT: log(1 + sum over (i, j) with score_i > score_j of e^{scale (cos_j - cos_i)})."""
    cos = F.cosine_similarity(first.float(), second.float(), dim=-1) * scale  # (B,)
    diff = cos[None, :] - cos[:, None]  # diff[i, j] = cos_j - cos_i
    ordered = scores[:, None] > scores[None, :]  # i scored above j
    diff = diff.masked_fill(~ordered, float("-inf"))
    zero = torch.zeros(1, device=cos.device, dtype=cos.dtype)
    return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola (2020): the mean ||f(x) - f(y)||^alpha over positive pairs of unit vectors
    (lower: positive pairs closer)."""
    x, y = F.normalize(x.float(), dim=-1), F.normalize(y.float(), dim=-1)
    return (x - y).norm(dim=1).pow(alpha).mean().item()


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola (2020): log of the mean e^{-t ||f(x) - f(y)||^2} over all pairs of distinct
    unit vectors (lower: spread more evenly over the sphere)."""
    x = F.normalize(x.float(), dim=-1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log().item()
