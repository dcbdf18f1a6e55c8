"""BERT: an encoder-only Transformer trained as a masked language model, in one file.

Design choices (after Devlin et al. 2019):
  - token + learned position embeddings, then L Transformer blocks whose self-attention sees
    the whole window in both directions (no causal mask);
  - pre-LayerNorm blocks (as our GPT; the original BERT normalises after the residual, which
    needs a longer warm-up to train stably);
  - masked-LM objective: 15% of the ordinary tokens are chosen; of those 80% become [MASK], 10% a
    random token, 10% stay as they are; the loss is the cross-entropy at the chosen positions only
    (`mask_tokens`). The random and kept tokens stop the model from assuming that every visible
    token is right, since [MASK] never appears when the encoder is used later;
  - the output layer shares the token embedding matrix (weight tying), after a dense + GELU +
    LayerNorm transform, as BERT's prediction head;
  - `masked_distribution` gives P(token | context) at [MASK] positions (fill-mask), and `embed`
    mean-pools the last layer into one vector per text (sentence embeddings).
Next-sentence prediction is not implemented (RoBERTa, Liu et al. 2019, found it unnecessary).

Shapes: B batch, T time, C = n_embd, H heads, D = C / H, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100  # label of the positions that are not predicted (cross_entropy's ignore_index)


@dataclass
class BertConfig:
    vocab_size: int = 8000
    context: int = 128  # tokens per window
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.1
    mask_prob: float = 0.15  # the share of tokens the model must predict


PRESETS = {
    "tiny": dict(context=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0),
    "mini": dict(context=128, n_layer=4, n_head=4, n_embd=256),  # BERT-mini's shape
}


def mask_tokens(
    ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: torch.Tensor,
    generator: torch.Generator | None = None,
    mask_prob: float = 0.15,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: (inputs, labels); labels are IGNORE except at the chosen positions.

    Of the ordinary tokens, `mask_prob` are chosen; a chosen token becomes [MASK] with
    probability 0.8, a uniformly random token with 0.1, and stays itself with 0.1.
    """
    draw = torch.rand(ids.shape, generator=generator)
    chosen = (draw < mask_prob) & ~torch.isin(ids, special_ids)
    labels = torch.where(chosen, ids, IGNORE)
    # A second uniform draw per token splits the chosen ones 80 / 10 / 10.
    split = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    inputs = torch.where(chosen & (split < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (split >= 0.8) & (split < 0.9), random_ids, inputs)
    return inputs, labels


class SelfAttention(nn.Module):
    """Multi-head self-attention over the whole window (both directions)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        mask = keep[:, None, None, :] if keep is not None else None  # padding is never attended
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), keep))
        return x + self.drop(self.mlp(self.ln_2(x)))


class BertMLM(nn.Module):
    """The encoder with its masked-LM head: ids (B, T) -> logits (B, T, V) at every position."""

    objective = "masked"  # the trainer corrupts the inputs and scores the chosen positions
    carries_state = False
    bounded_context = True

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.sequence_length = config.context
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.context, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        # BERT's prediction head: transform, then the (tied) embedding matrix plus a bias.
        self.head = nn.Sequential(
            nn.Linear(config.n_embd, config.n_embd), nn.GELU(), nn.LayerNorm(config.n_embd)
        )
        self.out_bias = nn.Parameter(torch.zeros(config.vocab_size))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def hidden_states(self, idx: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's vectors (B, T, C); `keep` (B, T) is False at padding."""
        n = idx.shape[1]
        if n > self.config.context:
            raise ValueError(f"{n} positions exceed the context of {self.config.context}")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(n, device=idx.device)))
        for block in self.blocks:
            x = block(x, keep)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        h = self.head(self.hidden_states(idx, keep))
        return h @ self.wte.weight.T + self.out_bias  # (B, T, V), tied to the embeddings

    @torch.no_grad()
    def masked_distribution(self, idx: torch.Tensor, mask_id: int) -> torch.Tensor:
        """P(token) at every [MASK] of `idx` (1, T): a (masks, V) probability table."""
        logits = self(idx)[0]
        return logits[idx[0] == mask_id].softmax(-1)

    @torch.no_grad()
    def embed(self, idx: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per row: the mean of its last-layer vectors over non-padding tokens."""
        h = self.hidden_states(idx, keep)
        weights = keep.float()[..., None] if keep is not None else torch.ones_like(h[..., :1])
        return (h * weights).sum(1) / weights.sum(1)
