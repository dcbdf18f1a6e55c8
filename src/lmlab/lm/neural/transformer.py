"""Transformer: the encoder-decoder of Vaswani et al. 2017, in one file.

A conditional language model P(y | x): the encoder reads the source x in both directions, and
the decoder predicts the target y one token at a time from its past tokens (masked
self-attention) and from the encoder's output (cross-attention).

Design choices:
  - the attention code is the GPT's and BERT's (attention.py: PyTorch's
    `scaled_dot_product_attention`, float32 under CPU autocast): the encoder's self-attention
    is BERT's (both directions, padding never attended), the decoder's masked self-attention and
    its KV cache are the GPT's, and only cross-attention is new here (queries from the decoder,
    keys and values from the encoder, padding never attended);
  - pre-LayerNorm blocks (x + sublayer(ln(x)), a final LayerNorm on each side) rather than the
    paper's post-LayerNorm: they train stably without a long warm-up (Xiong et al. 2020), as
    our GPT and BERT;
  - a GELU feed-forward layer 4x as wide as the model (the GPT's; the paper used ReLU, with
    d 512 and FFN 2048, also 4x);
  - token embeddings scaled by sqrt(d) (as the paper) plus fixed sinusoidal positions (the
    paper's), or learned ones; the embeddings start at std d^-1/2, so the scaled embeddings and
    the positions have similar size;
  - one vocabulary for both sides (a joint BPE: one embedding matrix for the source and the
    target, Press & Wolf 2017) or two (`src_vocab_size`); the output layer shares its weights
    with the target embedding (weight tying);
  - a KV cache for decoding (`new_cache`): the cross-attention keys and values of every layer
    are computed once per source, and the decoder's self-attention keys and values are stored
    as they come (the GPT's KVCache), so each new target token costs one row of attention.

Right padding: a source's padded positions are never attended (the `keep` mask), so a sentence
translates the same alone or in a batch; a target's padded positions come after every real
token, and the causal mask keeps them out of the real positions' logits.

Shapes: B batch, S source positions, T target positions, C = n_embd, H heads, D = C / H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lmlab.lm.neural.attention import attention, in_attention_dtype
from lmlab.lm.neural.bert import SelfAttention
from lmlab.lm.neural.gpt import MLP, CausalSelfAttention, GPTConfig, KVCache, sinusoidal_positions


@dataclass
class TransformerConfig:
    vocab_size: int = 8000  # the target's (and with a shared vocabulary, the source's)
    src_vocab_size: int | None = None  # None: one vocabulary, one embedding for both sides
    context: int = 256  # the most positions a source or a target may have
    n_encoder_layer: int = 3
    n_decoder_layer: int = 3
    n_head: int = 4
    n_embd: int = 256  # the feed-forward layers are 4x as wide (1024 by default)
    dropout: float = 0.1
    bias: bool = False  # in the decoder's and cross-attention's Linear and LayerNorm layers
    positions: str = "sinusoidal"  # or "learned"
    tie_weights: bool = True  # the output layer is the target embedding


PRESETS = {
    "tiny": dict(context=64, n_encoder_layer=2, n_decoder_layer=2, n_head=2, n_embd=32),
    # the reference shape (and Marian's peer): 3 + 3 layers, d 256, 4 heads, FFN 1024
    "base-cpu": dict(),
}


class CrossAttention(nn.Module):
    """Multi-head attention of the decoder's positions over the encoder's output."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.q = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.kv = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)  # fused
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def keys_values(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values (two (B, H, S, D)) of the encoder's output (B, S, C)."""
        B, S, C = memory.shape
        kv = in_attention_dtype(self.kv(memory)).view(B, S, 2, self.n_head, C // self.n_head)
        k, v = kv.permute(2, 0, 3, 1, 4)
        return k, v

    def weights(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor | None
    ) -> torch.Tensor:
        """The attention weights (B, H, T, S) of the decoder's positions x (B, T, C) over the
        source (the same as `forward` computes inside scaled_dot_product_attention)."""
        B, T, C = x.shape
        q = self.q(x).float().view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        scores = q @ kv[0].float().transpose(-2, -1) / math.sqrt(C // self.n_head)
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        return scores.softmax(-1)

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], keep: torch.Tensor | None
    ) -> torch.Tensor:
        B, T, C = x.shape
        q = in_attention_dtype(self.q(x)).view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        mask = keep[:, None, None, :] if keep is not None else None  # (B, 1, 1, S)
        dropout = self.dropout if self.training else 0.0
        y = attention(q, *kv, attn_mask=mask, dropout_p=dropout)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class EncoderBlock(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = SelfAttention(config)  # BERT's: both directions, padding never attended
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), keep))
        return x + self.mlp(self.ln_2(x))


class DecoderBlock(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)  # the GPT's, with its KV cache
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.cross = CrossAttention(config)
        self.ln_3 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None,
        cache: KVCache | None,
        layer: int,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, None)
        x = x + self.cross(self.ln_2(x), kv, keep)
        return x + self.mlp(self.ln_3(x))


class DecoderCache:
    """What decoding a batch of sources keeps: the cross-attention keys and values of every
    layer (computed once per source), the sources' padding mask, and the decoder's
    self-attention cache.

    `reorder(index)` keeps rows `index` in that order: beam search starts from one row per
    source, widens to K rows each, and at every step lets each new hypothesis continue the row
    it came from (a finished source's rows are dropped). Rows hold sources through `origin`,
    so reordering hypotheses of the same source copies no cross-attention keys, and only the
    self-attention positions read so far are copied."""

    def __init__(self, model: Transformer, memory: torch.Tensor, keep: torch.Tensor | None):
        c = model.config
        shape = GPTConfig(context=c.context, n_layer=c.n_decoder_layer, n_head=c.n_head,
                          n_embd=c.n_embd)  # fmt: skip
        weight = model.wte.weight
        self.self_attention = KVCache(shape, memory.shape[0], weight.device, weight.dtype)
        self.sources = [block.cross.keys_values(memory) for block in model.decoder]
        self.source_keep = keep
        self.origin = torch.arange(memory.shape[0], device=memory.device)  # each row's source
        self.cross, self.keep = self.sources, keep

    @property
    def length(self) -> int:
        """Target positions read so far."""
        return self.self_attention.length

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (N,) in that order (N may be more or fewer rows than now)."""
        cache, n, past = self.self_attention, index.shape[0], self.self_attention.length
        for buffers in (cache.k, cache.v):
            for layer, buffer in enumerate(buffers):
                if n > buffer.shape[0]:  # more rows than allocated: new buffers
                    wider = buffer.new_empty((n, *buffer.shape[1:]))
                    wider[:, :, :past] = buffer[index, :, :past]
                    buffers[layer] = wider
                else:
                    buffer[:n, :, :past] = buffer[index, :, :past]
        origin = self.origin[index]
        if not torch.equal(origin, self.origin):  # rows now read other sources
            self.cross = [(k[origin], v[origin]) for k, v in self.sources]
            self.keep = self.source_keep[origin] if self.source_keep is not None else None
        self.origin = origin


class Transformer(nn.Module):
    """The encoder-decoder: source ids (B, S), its mask, target ids (B, T) -> logits (B, T, V)
    of each next target token."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.check(config)
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)  # the target's
        shared = config.src_vocab_size is None
        self.src_wte = self.wte if shared else nn.Embedding(config.src_vocab_size, C)
        if config.positions == "learned":
            self.wpe = nn.Embedding(config.context, C)
        else:
            self.register_buffer(
                "pos_table", sinusoidal_positions(config.context, C), persistent=False
            )
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(config) for _ in range(config.n_encoder_layer))
        self.ln_enc = nn.LayerNorm(C, bias=config.bias)
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_decoder_layer))
        self.ln_f = nn.LayerNorm(C, bias=config.bias)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        # GPT-2: the residual projections scaled by 1/sqrt(2 * layers), the sum stays ~unit
        layers = config.n_encoder_layer + config.n_decoder_layer
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def check(config: TransformerConfig) -> None:
        """A ValueError for a config no model can be built from."""
        if config.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be sinusoidal or learned, not {config.positions!r}")
        if config.n_embd % config.n_head:
            raise ValueError(f"--dim {config.n_embd} must be a multiple of --heads {config.n_head}")

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):  # times sqrt(C) in embed: unit size
            nn.init.normal_(module.weight, mean=0.0, std=self.config.n_embd**-0.5)

    def embed(self, table: nn.Embedding, ids: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Scaled token embeddings plus positions first .. first + T - 1 (B, T, C)."""
        T = ids.shape[1]
        if first + T > self.config.context:
            raise ValueError(f"{first + T} positions exceed the context of {self.config.context}")
        pos = torch.arange(first, first + T, device=ids.device)
        x = table(ids) * math.sqrt(self.config.n_embd)
        x = x + (self.wpe(pos) if self.config.positions == "learned" else self.pos_table[pos])
        return self.drop(x)

    def encode(self, src: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output (B, S, C) for source ids (B, S) right-padded where `keep`
        (B, S) is 0 (None: no padding)."""
        keep = keep.bool() if keep is not None else None
        x = self.embed(self.src_wte, src)
        for block in self.encoder:
            x = block(x, keep)
        return self.ln_enc(x)

    def new_cache(self, memory: torch.Tensor, keep: torch.Tensor | None = None) -> DecoderCache:
        """A decoding cache for the sources `memory` (from `encode`) and their mask."""
        return DecoderCache(self, memory, keep.bool() if keep is not None else None)

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Next-token logits (B, T, V) for target ids (B, T): after what `cache` holds (then
        extended), or from the start given the encoder's `memory` and the source mask `keep`.
        `last_only` computes the output layer for the last position only: (B, 1, V)."""
        past = cache.length if cache is not None else 0
        if cache is None:
            keep = keep.bool() if keep is not None else None
            kvs = [block.cross.keys_values(memory) for block in self.decoder]
        else:
            keep, kvs = cache.keep, cache.cross
        self_cache = cache.self_attention if cache is not None else None
        x = self.embed(self.wte, tgt, past)
        for layer, block in enumerate(self.decoder):
            x = block(x, kvs[layer], keep, self_cache, layer)
        if self_cache is not None:
            self_cache.advance(tgt.shape[1])
        x = self.ln_f(x)
        return self.lm_head(x[:, -1:] if last_only else x)

    def forward(
        self, src: torch.Tensor, keep: torch.Tensor | None, tgt: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing: the logits (B, T, V) of the target's next tokens, given the whole
        source (B, S) and its mask, and the target so far (B, T)."""
        return self.decode(tgt, self.encode(src, keep), keep)

    @torch.no_grad()
    def cross_attention(
        self, src: torch.Tensor, keep: torch.Tensor | None, tgt: torch.Tensor, *, layer: int = -1
    ) -> torch.Tensor:
        """The cross-attention weights (B, T, S) of each target position over the source
        positions in decoder `layer` (default the last), averaged over its heads, by teacher
        forcing (rows sum to 1 over the kept positions)."""
        memory = self.encode(src, keep)
        keep = keep.bool() if keep is not None else None
        layer = range(len(self.decoder))[layer]
        x = self.embed(self.wte, tgt)
        for i, block in enumerate(self.decoder[:layer]):
            x = block(x, block.cross.keys_values(memory), keep, None, i)
        block = self.decoder[layer]
        x = x + block.attn(block.ln_1(x), None, layer, None)
        return block.cross.weights(block.ln_2(x), block.cross.keys_values(memory), keep).mean(1)
