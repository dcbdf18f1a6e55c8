"""STS evaluation of an encoder: how well the cosine of two texts' vectors ranks their gold
similarity (Spearman's rho, and Pearson's r, x100, as SentEval and MTEB report them), with the
two quantities SimCSE reports beside it (Wang & Isola 2020), on unit vectors:

  alignment   E ||f(x) - f(y)||^2 over positive pairs: those scored in the top fifth of the
              score range (STS-B: above 4 of 5, as SimCSE takes them); lower is better;
  uniformity  log E e^{-2 ||f(x) - f(y)||^2} over all pairs of distinct texts of the file;
              lower is better (more evenly spread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lmlab.contrastive.data import read_scored_pairs
from lmlab.embed.base import Encoder

POSITIVE_SHARE = 0.8  # positive pairs: scored at or above min + 0.8 (max - min)


def evaluate_sts(
    encoder: str | Path | Encoder, path: str | Path, *, batch_size: int = 64
) -> dict[str, Any]:
    """Spearman and Pearson (x100) of cosine against gold scores; alignment and uniformity.

    Args:
        encoder: an encoder spec (name, folder, run) or a loaded encoder.
        path: an STS file: the STS benchmark's own format, or text1,text2,score rows.
        batch_size: texts per forward pass.

    Example:
        >>> evaluate_sts("all-minilm-l6-v2", "stsb/sts-test.csv")["spearman"]
        82.03...
    """
    import torch
    from scipy.stats import pearsonr, spearmanr

    from lmlab.contrastive.losses import alignment, uniformity
    from lmlab.embed.load import load_encoder

    pairs = read_scored_pairs(path)
    enc = load_encoder(encoder)
    texts = list(dict.fromkeys(pairs.text1 + pairs.text2))  # each distinct text once
    where = {t: i for i, t in enumerate(texts)}
    vectors = enc.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    a = vectors[[where[t] for t in pairs.text1]]
    b = vectors[[where[t] for t in pairs.text2]]
    cos = (a * b).sum(axis=1)
    gold = np.asarray(pairs.scores, dtype=np.float64)
    if np.ptp(gold) == 0 or np.ptp(cos) == 0:
        spearman = pearson = float("nan")
    else:
        spearman = 100 * float(spearmanr(cos, gold).statistic)
        pearson = 100 * float(pearsonr(cos, gold).statistic)
    positive = gold >= gold.min() + POSITIVE_SHARE * np.ptp(gold)
    return {
        "encoder": getattr(enc, "name", str(encoder)),
        "file": str(path),
        "pairs": len(pairs),
        "spearman": spearman,
        "pearson": pearson,
        "alignment": alignment(torch.from_numpy(a[positive]), torch.from_numpy(b[positive])),
        "uniformity": uniformity(torch.from_numpy(vectors)),
        "positive_pairs": int(positive.sum()),
    }
