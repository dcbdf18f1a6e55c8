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
  - optional next-sentence prediction (`nsp=True`; off by default, as RoBERTa, Liu et al. 2019,
    found it unnecessary): a window becomes [CLS] A [SEP] B [SEP], where B follows A in the text
    half of the time and is a span from a random place otherwise (`next_sentence_pairs`; like
    BERT's own data code, "sentences" are spans of text); segment embeddings tell A from B, and
    a head on [CLS] (BERT's pooler, dense + tanh, then 2 classes) predicts which. The loss is
    MLM + NSP. Without it the model has no segment embeddings and no such head.

Shapes: B batch, T time, C = n_embd, H heads, D = C / H, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmlab.lm.neural.attention import attention

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
    nsp: bool = False  # also train next-sentence prediction (segment embeddings, [CLS] head)


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


def next_sentence_pairs(
    windows: torch.Tensor,
    stream: torch.Tensor,
    *,
    cls_id: int,
    sep_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT's next-sentence task from a token stream: (ids, segments, is_next), each row (T,).

    Row b of `windows` (B, T), a span of the text, becomes [CLS] A [SEP] B [SEP] in T tokens:
    A is its first `a` tokens (a uniform in 1 .. T-4), and B the T-3-a tokens right after A
    (is_next = 1, with probability 1/2) or as many from a random place of `stream` (0).
    Segments are 0 for [CLS] A [SEP] and 1 for B [SEP].
    """
    B, T = windows.shape
    room = T - 3  # tokens left for A and B once [CLS] and two [SEP] are in
    if room < 2:
        raise ValueError("next-sentence prediction needs a context of at least 5 tokens")
    a_len = torch.randint(1, room, (B,), generator=generator)
    is_next = torch.rand(B, generator=generator) < 0.5
    starts = torch.randint(len(stream) - room + 1, (B,), generator=generator)
    ids = torch.empty(B, T, dtype=torch.long)
    segments = torch.zeros(B, T, dtype=torch.long)
    cls, sep = torch.tensor([cls_id]), torch.tensor([sep_id])
    for b in range(B):
        a, n = int(a_len[b]), room - int(a_len[b])
        second = windows[b, a : a + n] if is_next[b] else stream[starts[b] : starts[b] + n]
        ids[b] = torch.cat([cls, windows[b, :a].long(), sep, second.long(), sep])
        segments[b, a + 2 :] = 1
    return ids, segments, is_next.long()


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
        y = attention(q, k, v, attn_mask=mask, dropout_p=dropout)
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
        if config.nsp:  # segment A / B embeddings, and the pooler + classifier on [CLS]
            self.wse = nn.Embedding(2, config.n_embd)
            self.nsp_head = nn.Sequential(
                nn.Linear(config.n_embd, config.n_embd), nn.Tanh(), nn.Linear(config.n_embd, 2)
            )
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def hidden_states(
        self,
        idx: torch.Tensor,
        keep: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last layer's vectors (B, T, C); `keep` (B, T) is False at padding.

        `segments` (B, T), 0 or 1, marks sentence A and B of an NSP model (default: all A).
        """
        n = idx.shape[1]
        if n > self.config.context:
            raise ValueError(f"{n} positions exceed the context of {self.config.context}")
        x = self.wte(idx) + self.wpe(torch.arange(n, device=idx.device))
        if self.config.nsp:
            x = x + self.wse(segments if segments is not None else torch.zeros_like(idx))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, keep)
        return self.ln_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        keep: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        *,
        nsp: bool = False,
        at: torch.Tensor | None = None,
    ):
        """Masked-LM logits (B, T, V); with `nsp`, also the next-sentence logits (B, 2).

        `at` (B, T, bool) computes the logits of those positions only, as an (N, V) table in
        row-major order: training predicts ~15% of the tokens, and the vocabulary-wide output
        layer is the costliest part of the model, so skipping the rest nearly halves a step.
        """
        states = self.hidden_states(idx, keep, segments)
        chosen = states if at is None else states[at]
        logits = self.head(chosen) @ self.wte.weight.T + self.out_bias  # tied to the embeddings
        if not nsp:
            return logits
        return logits, self.nsp_head(states[:, 0])  # read at [CLS]

    @torch.no_grad()
    def masked_distribution(self, idx: torch.Tensor, mask_id: int) -> torch.Tensor:
        """P(token) at every [MASK] of `idx` (1, T): a (masks, V) probability table."""
        return self(idx, at=idx == mask_id).softmax(-1)

    @torch.no_grad()
    def embed(self, idx: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per row: the mean of its last-layer vectors over non-padding tokens."""
        h = self.hidden_states(idx, keep)
        weights = keep.float()[..., None] if keep is not None else torch.ones_like(h[..., :1])
        return (h * weights).sum(1) / weights.sum(1)
