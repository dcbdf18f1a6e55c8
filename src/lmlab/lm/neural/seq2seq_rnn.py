"""Seq2seq RNN: a recurrent encoder-decoder, with or without attention, in one file.

A conditional language model P(y | x), as the lecture builds it up:
  - `attention="none"` (Sutskever, Vinyals & Le 2014): the encoder reads the source, and the
    decoder starts from the encoder's final state, the whole source squeezed into one vector
    (the bottleneck); each target token is predicted from the decoder's state alone;
  - `attention="bahdanau"` (Bahdanau, Cho & Bengio 2015, additive): before each target token
    the decoder's previous state s looks at every source position h_j,
    e_j = v . tanh(W s + U h_j), weights a = softmax(e), context c = sum_j a_j h_j, and c is fed
    into the recurrent step with the previous token (so the steps run one at a time);
  - `attention="luong"` (Luong, Pham & Manning 2015, "general": e_j = h_t . W h_j) or
    `"luong-dot"` (e_j = h_t . h_j): the decoder runs first, and its state h_t at each step
    looks at the source; the output reads tanh(W_c [c_t; h_t]) (no input feeding, so the
    decoder's recurrence runs over the whole target in one call).

Design choices:
  - the encoder is a GRU or an LSTM (PyTorch's cells), bidirectional by default: each source
    position's vector h_j is [forward state; backward state], `n_hidden` wide in all (half
    each way), so it tells about the words before and after it; padding is packed away
    (`pack_padded_sequence`), so a padded source reads as the same sentence alone;
  - the decoder (same cell, `n_layer` layers, `n_hidden` wide) starts, in every layer, from
    tanh(W [forward state at the last token; backward state at the first]) of the encoder's
    top layer (Bahdanau et al. start from the backward state; with one direction it is the
    last state, Sutskever's), computed from the encoder's output itself, so `encode`'s output
    is all decoding needs;
  - the output layer reads a tanh layer of `n_embd` units (the state, with attention also the
    context) and shares its weights with the target embedding (Press & Wolf 2017);
  - dropout on the embeddings and before the output.

The interface is the Transformer's (transformer.py), so training (objectives/seq2seq.py),
decoding and the server take either: `encode(src, keep)`, `new_cache(memory, keep)` (a cache
with `length` and `reorder(index)` for beam search), `decode(tgt, memory, keep, cache,
last_only)`, `forward(src, keep, tgt)`, and `cross_attention(src, keep, tgt)`.

Shapes: B batch, S source positions, T target positions, E = n_embd, H = n_hidden,
L = n_layer, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lmlab.errors import LmlabError
from lmlab.lm.neural.rnn import _cpu_autocast_without_bfloat16

ATTENTIONS = ("none", "bahdanau", "luong", "luong-dot")
CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class Seq2SeqRNNConfig:
    vocab_size: int = 8000  # the target's (and with a shared vocabulary, the source's)
    src_vocab_size: int | None = None  # None: one vocabulary, one embedding for both sides
    context: int = 256  # the most tokens of a source or a target (training cuts longer ones)
    cell: str = "gru"  # gru or lstm
    n_layer: int = 1  # recurrent layers of the encoder, and of the decoder
    n_embd: int = 256  # embedding size (and the output layer's input)
    n_hidden: int = 512  # the decoder's state and each source vector (bidirectional: H/2 a way)
    bidirectional: bool = True  # the encoder reads the source both ways
    attention: str = "bahdanau"  # none, bahdanau, luong (general) or luong-dot
    dropout: float = 0.1
    tie_weights: bool = True  # the output layer is the target embedding


PRESETS = {
    "tiny": dict(context=64, n_embd=32, n_hidden=32),
    "base-cpu": dict(),
}


def _run(rnn: nn.RNNBase, x: torch.Tensor | PackedSequence, h):
    """`rnn(x, h)`, in float32 where oneDNN has no bfloat16 LSTM for this CPU."""
    data = x.data if isinstance(x, PackedSequence) else x
    if isinstance(rnn, nn.LSTM) and _cpu_autocast_without_bfloat16(data):
        with torch.autocast("cpu", enabled=False):
            h = tuple(s.float() for s in h) if h is not None else None
            x = x._replace(data=data.float()) if isinstance(x, PackedSequence) else x.float()
            return rnn(x, h)
    return rnn(x, h)


def _batch_rows(h, index: torch.Tensor):
    """The rows `index` of a recurrent state (L, B, H), or of both parts of an LSTM's."""
    pick = lambda s: s.index_select(1, index)  # noqa: E731
    return tuple(map(pick, h)) if isinstance(h, tuple) else pick(h)


class RNNDecoderCache:
    """What decoding a batch of sources keeps: the source vectors and mask, their attention
    keys (computed once), and the decoder's recurrent state after the target read so far."""

    def __init__(self, model: Seq2SeqRNN, memory: torch.Tensor, keep: torch.Tensor) -> None:
        self.memory, self.keep = memory, keep
        self.keys = model.attention_keys(memory)
        self.hidden = model.initial_state(memory, keep)
        self.length = 0  # target positions read so far

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the rows `index` (B',), in that order: beam search's surviving hypotheses."""
        self.memory = self.memory.index_select(0, index)
        self.keep = self.keep.index_select(0, index)
        self.keys = self.keys.index_select(0, index) if self.keys is not None else None
        self.hidden = _batch_rows(self.hidden, index)


class Seq2SeqRNN(nn.Module):
    """The recurrent encoder-decoder: source ids (B, S), its mask, target ids (B, T) ->
    logits (B, T, V) of each next target token."""

    def __init__(self, config: Seq2SeqRNNConfig) -> None:
        super().__init__()
        self.check(config)
        self.config = config
        E, H, L = config.n_embd, config.n_hidden, config.n_layer
        cell = CELLS[config.cell]
        self.wte = nn.Embedding(config.vocab_size, E)  # the target's
        shared = config.src_vocab_size is None
        self.src_wte = self.wte if shared else nn.Embedding(config.src_vocab_size, E)
        self.drop = nn.Dropout(config.dropout)
        between = config.dropout if L > 1 else 0.0  # nn.GRU/LSTM: between layers only
        ways = 2 if config.bidirectional else 1
        self.encoder = cell(E, H // ways, L, batch_first=True, bidirectional=config.bidirectional,
                            dropout=between)  # fmt: skip
        parts = 2 if config.cell == "lstm" else 1  # an LSTM's state is (h, c)
        self.bridge = nn.Linear(H, parts * H)  # the encoder's summary -> the decoder's start
        feed = H if config.attention == "bahdanau" else 0  # the context goes into the step
        self.decoder = cell(E + feed, H, L, batch_first=True, dropout=between)
        if config.attention == "bahdanau":
            self.query = nn.Linear(H, H, bias=False)  # W s
            self.key = nn.Linear(H, H)  # U h_j (+ b)
            self.score = nn.Linear(H, 1, bias=False)  # v
        elif config.attention == "luong":
            self.key = nn.Linear(H, H, bias=False)  # W h_j: e_j = h_t . W h_j
        with_context = config.attention != "none"
        self.pre_output = nn.Linear(2 * H if with_context else H, E)
        self.lm_head = nn.Linear(E, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight

    @staticmethod
    def check(config: Seq2SeqRNNConfig) -> None:
        """A ValueError for a config no model can be built from."""
        if config.cell not in CELLS:
            raise ValueError(f"--cell must be one of {', '.join(CELLS)}, not {config.cell!r}")
        if config.attention not in ATTENTIONS:
            raise ValueError(
                f"--attention must be one of {', '.join(ATTENTIONS)}, not {config.attention!r}"
            )
        if config.bidirectional and config.n_hidden % 2:
            raise ValueError(
                f"a bidirectional encoder needs an even --hidden (half each way), "
                f"not {config.n_hidden}"
            )

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):  # tied: logits of std ~0.1 sqrt(E / 2) at first
            nn.init.normal_(module.weight, std=0.1)
        elif isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # --- the encoder

    def encode(self, src: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The source vectors (B, S, H) for source ids (B, S) right-padded where `keep` (B, S)
        is 0 (None: no padding); a padded position's vector is zeros."""
        x = self.drop(self.src_wte(src))
        if keep is None:
            out, _ = _run(self.encoder, x, None)
            return out
        lengths = keep.sum(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = _run(self.encoder, packed, None)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return out

    def initial_state(self, memory: torch.Tensor, keep: torch.Tensor | None):
        """The decoder's first state in every layer, from the encoder's top layer: tanh(W
        [forward state at the last token; backward state at the first]) -> (L, B, H), or the
        LSTM's pair."""
        B, S, H = memory.shape
        last = keep.sum(1).long() - 1 if keep is not None else torch.full((B,), S - 1)
        at_last = memory[torch.arange(B, device=memory.device), last.to(memory.device)]
        if self.config.bidirectional:
            summary = torch.cat([at_last[:, : H // 2], memory[:, 0, H // 2 :]], dim=-1)
        else:
            summary = at_last
        state = torch.tanh(self.bridge(summary)).unsqueeze(0).expand(self.config.n_layer, -1, -1)
        state = state.contiguous()
        return tuple(state.chunk(2, dim=-1)) if self.config.cell == "lstm" else state

    def attention_keys(self, memory: torch.Tensor) -> torch.Tensor | None:
        """What each source position is compared by (B, S, H): U h_j (Bahdanau), W h_j (Luong
        general), h_j itself (dot); None without attention."""
        attention = self.config.attention
        if attention in ("bahdanau", "luong"):
            return self.key(memory)
        return memory if attention == "luong-dot" else None

    # --- the decoder

    def new_cache(self, memory: torch.Tensor, keep: torch.Tensor | None = None) -> RNNDecoderCache:
        """A decoding cache for the sources `memory` (from `encode`) and their mask."""
        keep = keep if keep is not None else torch.ones(memory.shape[:2], device=memory.device)
        return RNNDecoderCache(self, memory, keep.bool())

    def _attend(self, scores: torch.Tensor, keep: torch.Tensor, memory: torch.Tensor):
        """Weights (B, T, S) of scores (B, T, S) over the kept positions, and the contexts
        (B, T, H) they average."""
        weights = scores.float().masked_fill(~keep[:, None, :], float("-inf")).softmax(-1)
        return weights, weights.to(memory.dtype) @ memory

    def _steps(self, x: torch.Tensor, cache: RNNDecoderCache):
        """The decoder over target embeddings x (B, T, E) after the cache's state (updated):
        the pre-output vectors (B, T, E) and the attention weights (B, T, S) (or None)."""
        attention, memory, keep = self.config.attention, cache.memory, cache.keep
        if attention == "bahdanau":  # the previous state asks first: one step at a time
            outs, contexts, weights = [], [], []
            for t in range(x.shape[1]):
                h = cache.hidden[0] if isinstance(cache.hidden, tuple) else cache.hidden
                e = self.score(torch.tanh(self.query(h[-1])[:, None] + cache.keys))  # (B, S, 1)
                w, c = self._attend(e.transpose(1, 2), keep, memory)  # (B, 1, S), (B, 1, H)
                step = torch.cat([x[:, t : t + 1], c.to(x.dtype)], dim=-1)
                out, cache.hidden = _run(self.decoder, step, cache.hidden)
                outs.append(out), contexts.append(c), weights.append(w)
            out, context, w = torch.cat(outs, 1), torch.cat(contexts, 1), torch.cat(weights, 1)
        else:  # the decoder runs over the whole target; its states ask afterwards
            out, cache.hidden = _run(self.decoder, x, cache.hidden)
            if attention == "none":
                cache.length += x.shape[1]
                return torch.tanh(self.pre_output(self.drop(out))), None
            w, context = self._attend(out @ cache.keys.transpose(1, 2), keep, memory)
        cache.length += x.shape[1]
        both = torch.cat([context.to(out.dtype), out], dim=-1)
        return torch.tanh(self.pre_output(self.drop(both))), w

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        cache: RNNDecoderCache | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Next-token logits (B, T, V) for target ids (B, T): after what `cache` holds (then
        extended), or from the start given the encoder's `memory` and the source mask `keep`.
        `last_only` computes the output layer for the last position only: (B, 1, V)."""
        cache = cache if cache is not None else self.new_cache(memory, keep)
        out, _ = self._steps(self.drop(self.wte(tgt)), cache)
        return self.lm_head(self.drop(out[:, -1:] if last_only else out))

    def forward(
        self, src: torch.Tensor, keep: torch.Tensor | None, tgt: torch.Tensor
    ) -> torch.Tensor:
        """Teacher forcing: the logits (B, T, V) of the target's next tokens, given the whole
        source (B, S) and its mask, and the target so far (B, T)."""
        return self.decode(tgt, self.encode(src, keep), keep)

    @torch.no_grad()
    def cross_attention(
        self, src: torch.Tensor, keep: torch.Tensor | None, tgt: torch.Tensor
    ) -> torch.Tensor:
        """The attention weights (B, T, S) of each target position over the source positions,
        by teacher forcing (rows sum to 1 over the kept positions)."""
        if self.config.attention == "none":
            raise LmlabError(
                "this model has no attention (--attention none): the decoder reads only the "
                "encoder's final state, so there is no source-target matrix to draw"
            )
        cache = self.new_cache(self.encode(src, keep), keep)
        _, weights = self._steps(self.wte(tgt), cache)
        return weights
