"""The cross-attention of a translation, as a matrix of source words x target words, and its
picture (`lmlab attention RUN "..." --out attn.png`).

The model translates the source, then reads it again with its own translation as the target
(`cross_attention`: the probabilities with which each target position attends to each source
position in the last decoder layer, averaged over its heads). The row of a target token is the
position that predicted it. Tokens are grouped into words (a token that starts with a space
starts a word): a source word's column sums its tokens' weights (the attention it gets), a
target word's row averages its tokens' rows, so every row still sums to 1. The end token is a
word of its own on both sides ("</s>"): attention often rests on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

END = "</s>"


@dataclass
class AttentionMap:
    """Cross-attention weights (target words x source words) of one translation."""

    source_words: list[str]
    target_words: list[str]
    weights: list[list[float]]  # [target word][source word], each row sums to 1
    translation: str


def words_of(tokenizer, ids: list[int]) -> tuple[list[str], list[int]]:
    """The words of token ids and, for each token, the index of its word; the last token
    (the end token) is a word of its own."""
    groups: list[list[int]] = []
    owner: list[int] = []
    for token in ids[:-1]:
        if not groups or tokenizer.decode([token])[:1].isspace():
            groups.append([])
        groups[-1].append(token)
        owner.append(len(groups) - 1)
    words = [tokenizer.decode(group).strip() for group in groups]
    return [*words, END], [*owner, len(words)]


@torch.inference_mode()
def attention_map(s2s, source: str, **options) -> AttentionMap:
    """Translate `source` (`options` go to `Seq2Seq.translate`) and return the cross-attention
    of that translation, word by word."""
    (src_ids,), _ = s2s.source_token_ids([source])
    (tgt_ids,) = s2s.translate_ids([source], **options)
    end = s2s.end_id
    device = next(s2s.model.parameters()).device
    src = torch.tensor([[*src_ids, end]], device=device)
    tgt_in = torch.tensor([[s2s.start_id, *tgt_ids]], device=device)
    weights = s2s.model.cross_attention(src, torch.ones_like(src), tgt_in)[0].float().cpu()
    source_words, src_owner = words_of(s2s.tokenizer, [*src_ids, end])
    target_words, tgt_owner = words_of(s2s.tokenizer, [*tgt_ids, end])
    columns = torch.zeros(weights.shape[0], len(source_words))
    columns.index_add_(1, torch.tensor(src_owner), weights)  # a word gets its tokens' sum
    rows = torch.zeros(len(target_words), len(source_words))
    rows.index_add_(0, torch.tensor(tgt_owner), columns)
    sizes = torch.bincount(torch.tensor(tgt_owner), minlength=len(target_words))
    rows = rows / sizes[:, None]  # a word's row: its tokens' mean
    translation = s2s.tokenizer.decode(tgt_ids).strip()
    return AttentionMap(source_words, target_words, rows.tolist(), translation)


def plot_attention(amap: AttentionMap, out: str | Path) -> Path:
    """Draw the matrix (source words along the top, target words down the side) to a PNG,
    atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmlab.home import atomic_file

    out = Path(out)
    S, T = len(amap.source_words), len(amap.target_words)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * S + 2), max(3.0, 0.4 * T + 1.5)))
    image = ax.imshow(amap.weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(S), amap.source_words, rotation=60, ha="left", rotation_mode="anchor")
    ax.set_yticks(range(T), amap.target_words)
    ax.xaxis.tick_top()
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    fig.colorbar(image, ax=ax, fraction=0.04, label="attention")
    fig.tight_layout()
    with atomic_file(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out
