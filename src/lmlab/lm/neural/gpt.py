"""GPT: a decoder-only Transformer language model, in one file.

Design choices (after GPT-2, Radford et al. 2019, and nanoGPT):
  - token embeddings plus learned or sinusoidal (Vaswani et al. 2017) position embeddings, or
    rotary positions (RoPE, Su et al. 2021): queries and keys turned by angles that grow with
    the position, so attention scores depend on how far apart two tokens are;
  - pre-LayerNorm blocks: x + attn(ln(x)), then x + mlp(ln(x)), and a final LayerNorm;
  - multi-head causal self-attention with one fused query/key/value projection and PyTorch's
    `scaled_dot_product_attention` (flash / memory-efficient kernels where available; see
    attention.py for bfloat16 on a CPU);
  - a GELU MLP 4x as wide as the model;
  - the output layer shares its weights with the token embedding (weight tying, Press & Wolf
    2017), which saves vocab x n_embd parameters and usually lowers perplexity;
  - a KV cache for decoding: each new token attends to the stored keys and values of the past,
    so generating T tokens costs O(T) attention rows instead of recomputing O(T^2).

Shapes: B batch, T time (new tokens), S keys (past + new), C = n_embd, H heads, D = C / H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmlab.lm.neural.attention import attention, in_attention_dtype


@dataclass
class GPTConfig:
    vocab_size: int = 256
    context: int = 256  # the most positions a sequence may have (block size)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False  # no biases in Linear and LayerNorm layers: ~10% faster on CPU (GPT-2 has)
    positions: str = "rope"  # rotary; or "learned", or "sinusoidal" (fixed, no parameters)
    tie_weights: bool = True


PRESETS = {
    "tiny": dict(context=64, n_layer=2, n_head=2, n_embd=32),  # tests and laptops: seconds
    # nanoGPT's CPU configuration for Tiny Shakespeare (its README, "I only have a macbook")
    "shakespeare-cpu": dict(context=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
}


class KVCache:
    """Keys and values of every layer for the positions read so far, preallocated."""

    def __init__(self, config: GPTConfig, batch_size: int, device, dtype) -> None:
        shape = (batch_size, config.n_head, config.context, config.n_embd // config.n_head)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.length = 0  # positions filled; advanced by GPT.forward after all layers ran

    def positions(self, T: int) -> torch.Tensor:
        """(1, T): where the next T tokens of every row go."""
        return torch.arange(self.length, self.length + T, device=self.k[0].device)[None]

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append a layer's new keys and values (B, H, T, D); return all of them and the
        attention mask of the new tokens (None: the usual lower triangle of a fresh read)."""
        B, past, T = k.shape[0], self.length, k.shape[2]
        self.k[layer][:B, :, past : past + T] = k
        self.v[layer][:B, :, past : past + T] = v
        mask = None
        if past:  # new token t (position past + t) sees keys 0 .. past + t
            mask = torch.ones(T, past + T, dtype=torch.bool, device=k.device).tril(past)
        return self.k[layer][:B, :, : past + T], self.v[layer][:B, :, : past + T], mask

    def advance(self, T: int) -> None:
        self.length += T

    @staticmethod
    def join(rows: list[KVCache]) -> KVRows:
        """One cache over the one-row caches of sequences stepped together (the server)."""
        return KVRows(rows)


class KVRows:
    """One-row KV caches of different lengths read as one batch: each row's new tokens are
    written to its own cache at its own positions, and attend to its own keys only."""

    def __init__(self, rows: list[KVCache]) -> None:
        self.rows = rows
        self.lengths = torch.tensor([r.length for r in rows], device=rows[0].k[0].device)
        self.length = max(r.length for r in rows)  # the longest row's

    def positions(self, T: int) -> torch.Tensor:
        """(B, T): each row continues from its own length."""
        return self.lengths[:, None] + torch.arange(T, device=self.lengths.device)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        T = k.shape[2]
        for b, row in enumerate(self.rows):
            row.k[layer][:, :, row.length : row.length + T] = k[b]
            row.v[layer][:, :, row.length : row.length + T] = v[b]
        S = self.length + T
        keys = torch.cat([row.k[layer][:, :, :S] for row in self.rows])
        values = torch.cat([row.v[layer][:, :, :S] for row in self.rows])
        # (B, 1, T, S): row b's token t sees keys 0 .. lengths[b] + t (the rest is another
        # row's length of stale or empty cells)
        mask = torch.arange(S, device=k.device) <= self.positions(T)[:, :, None]
        return keys, values, mask[:, None]

    def advance(self, T: int) -> None:
        for row in self.rows:
            row.advance(T)
        self.lengths += T
        self.length += T

    def split(self) -> None:
        """Nothing to hand back: every row's keys and values went to its own cache."""


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | KVRows | None,
        layer: int,
        turns: torch.Tensor | None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        # one cast for all three (float32 under CPU autocast), and none in rotate or attention
        qkv = in_attention_dtype(self.qkv(x)).view(B, T, 3, self.n_head, C // self.n_head)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # three (B, H, T, D)
        if turns is not None:  # rotary: turn queries and keys in one go; the cache keeps keys
            q, k = rotate(qkv[:, :, :2], turns).permute(2, 0, 3, 1, 4)  # already turned
        mask = None
        if cache is not None:
            k, v, mask = cache.store(layer, k, v)
        dropout = self.dropout if self.training else 0.0
        if mask is None:  # a fresh sequence: the usual lower-triangular mask
            y = attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            y = attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | KVRows | None,
        layer: int,
        turns: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, turns)  # pre-LayerNorm: a clean residual
        return x + self.mlp(self.ln_2(x))


def sinusoidal_positions(context: int, n_embd: int) -> torch.Tensor:
    """(context, n_embd): sin on even, cos on odd dimensions at geometric wavelengths."""
    position = torch.arange(context, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(1e4) / n_embd)
    )
    table = torch.zeros(context, n_embd)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: n_embd // 2])
    return table


def rotary_turns(context: int, head_dim: int, base: float = 1e4) -> torch.Tensor:
    """(context, head_dim / 2) unit complex numbers: position p turns dimension pair i (the
    pair x[2i], x[2i+1], read as one complex number) by the angle p / base^(2i / head_dim)."""
    frequency = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.arange(context, dtype=torch.float32)[:, None] * frequency
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """x (B, T, ..., D) with each dimension pair of position t turned by turns[t] (T, D / 2),
    or of row b by turns[b, t] (B, T, D / 2): one complex product (a seventh of the cost of
    rotating the two halves in real arithmetic, here)."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    rows = turns.shape[0] if turns.dim() == 3 else 1
    turned = pairs * turns.view(rows, x.shape[1], *[1] * (x.dim() - 3), -1)
    return torch.view_as_real(turned).flatten(-2).type_as(x)


class GPT(nn.Module):
    """The decoder-only Transformer: token ids (B, T) -> next-token logits (B, T, V)."""

    carries_state = False  # trained on independent random windows
    bounded_context = True  # positions beyond `context` have no embedding

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.sequence_length = config.context
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.positions == "learned":
            self.wpe = nn.Embedding(config.context, config.n_embd)
        elif config.positions == "sinusoidal":
            self.register_buffer(
                "pos_table", sinusoidal_positions(config.context, config.n_embd), persistent=False
            )
        elif config.positions == "rope":
            turns = rotary_turns(config.context, config.n_embd // config.n_head)
            self.register_buffer("turns", turns, persistent=False)
        else:
            raise ValueError(
                f"positions must be learned, sinusoidal or rope, not {config.positions!r}"
            )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * layers) so the sum stays ~unit.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def new_cache(self, batch_size: int) -> KVCache:
        p = self.wte.weight
        return KVCache(self.config, batch_size, p.device, p.dtype)

    def hidden_states(
        self, idx: torch.Tensor, cache: KVCache | KVRows | None = None
    ) -> torch.Tensor:
        """The vectors (B, T, C) the output layer reads: the final LayerNorm of the last block.

        Position t sees tokens 0..t only, so right padding changes nothing before it.
        """
        T = idx.shape[1]
        past = cache.length if cache is not None else 0
        if past + T > self.config.context:
            raise ValueError(f"{past + T} positions exceed the context of {self.config.context}")
        # (1, T) positions, or (B, T) for rows of different lengths
        pos = torch.arange(T, device=idx.device)[None] if cache is None else cache.positions(T)
        x, turns = self.wte(idx), None  # (B, T, C)
        if self.config.positions == "rope":
            turns = self.turns[pos]  # (1 or B, T, D / 2)
        else:
            x = x + (self.wpe(pos) if self.config.positions == "learned" else self.pos_table[pos])
        x = self.drop(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, turns)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)

    def forward(
        self, idx: torch.Tensor, cache: KVCache | KVRows | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (B, T, V) for ids (B, T) read after what `cache` holds (then extended).

        `last_only` computes the output layer for the last position only: (B, 1, V).
        """
        x = self.hidden_states(idx, cache)
        return self.lm_head(x[:, -1:] if last_only else x)
