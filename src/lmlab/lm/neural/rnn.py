"""Recurrent language models: Elman RNN, LSTM and GRU, stacked, in one file.

Design choices (after Zaremba, Sutskever & Vinyals 2014, "Recurrent neural network
regularization", and the PyTorch word_language_model example):
  - token embedding -> L recurrent layers -> a linear layer over the vocabulary;
  - dropout on the embeddings, between the layers and before the output (never on the
    recurrent connections, as Zaremba et al.);
  - optional weight tying (Press & Wolf 2017; Inan et al. 2017): the output layer reuses the
    embedding matrix, so the hidden size equals the embedding size;
  - trained by truncated back-propagation through time: the trainer reads the text as B parallel
    streams, `context` tokens at a time, and carries the hidden state from one batch to the next
    (its gradient cut at the batch boundary).
The cells are PyTorch's (nn.RNN with tanh, nn.LSTM, nn.GRU): their equations are in their docs.

Shapes: B batch, T time, C = n_embd (embedding and hidden size), L layers, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lmlab.lm.neural.precision import cpu_has_bfloat16


@dataclass
class RNNConfig:
    vocab_size: int = 10000
    context: int = 35  # steps of back-propagation through time (the batch length)
    n_layer: int = 2
    n_embd: int = 200  # embedding size = hidden size
    cell: str = "lstm"  # rnn (tanh), lstm or gru
    dropout: float = 0.0
    tie_weights: bool = True
    init_range: float = 0.1  # weights start uniform in [-0.1, 0.1] (Zaremba et al.)


PRESETS = {
    "tiny": dict(context=32, n_layer=1, n_embd=32),
    "zaremba-small": dict(context=20, n_layer=2, n_embd=200, dropout=0.0, tie_weights=False),
    "zaremba-medium": dict(context=35, n_layer=2, n_embd=650, dropout=0.5, init_range=0.05),
}
CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class Hidden:
    """The recurrent state of every layer: (L, B, C), a pair of them for the LSTM (h, c)."""

    def __init__(self) -> None:
        self.h: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None  # None: zeros
        self.rows: list[Hidden] = []  # a joined state: the one-row states it stands for

    def detach_(self) -> None:
        """Keep the values, forget how they were computed (truncated BPTT)."""
        if self.h is not None:
            self.h = _each(self.h, torch.Tensor.detach)

    @classmethod
    def join(cls, rows: list[Hidden]) -> Hidden:
        """One state over the one-row states of sequences stepped together (the server);
        `split` hands each row its part afterwards. Every row must have read something."""
        joined, first = cls(), rows[0].h
        joined.rows = rows
        if isinstance(first, tuple):
            joined.h = tuple(torch.cat([r.h[i] for r in rows], dim=1) for i in range(len(first)))
        else:
            joined.h = torch.cat([r.h for r in rows], dim=1)
        return joined

    def split(self) -> None:
        """Give each joined row its part of the state the batched step left."""
        for b, row in enumerate(self.rows):
            row.h = _each(self.h, lambda h, b=b: h[:, b : b + 1])


def _each(h, fn):
    """`fn` of the hidden state, or of both parts of an LSTM's (h, c)."""
    return tuple(map(fn, h)) if isinstance(h, tuple) else fn(h)


def _cpu_autocast_without_bfloat16(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not cpu_has_bfloat16()


class RNNLM(nn.Module):
    """Embedding, stacked recurrent layers, output layer: ids (B, T) -> logits (B, T, V)."""

    carries_state = True  # trained on consecutive batches with the hidden state carried over
    bounded_context = False  # reads any length

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {config.cell!r}")
        self.config = config
        self.sequence_length = config.context
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        # nn.RNN/LSTM/GRU apply `dropout` to the outputs of every layer but the last.
        self.rnn = CELLS[config.cell](
            config.n_embd, config.n_embd, config.n_layer, batch_first=True, dropout=config.dropout
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        for p in self.parameters():
            nn.init.uniform_(p, -config.init_range, config.init_range)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight

    def new_cache(self, batch_size: int) -> Hidden:
        return Hidden()

    def hidden_states(self, idx: torch.Tensor, cache: Hidden | None = None) -> torch.Tensor:
        """The top recurrent layer's outputs (B, T, C), continuing from `cache` (updated)."""
        x = self.drop(self.wte(idx))  # (B, T, C)
        h = cache.h if cache is not None else None
        if self.config.cell == "lstm" and _cpu_autocast_without_bfloat16(x):
            # oneDNN has no bfloat16 LSTM for such a CPU (it raises): this layer runs float32
            with torch.autocast("cpu", enabled=False):
                h = tuple(s.float() for s in h) if h is not None else None
                out, h = self.rnn(x.float(), h)
        else:
            out, h = self.rnn(x, h)  # (B, T, C)
        if cache is not None:
            cache.h = h
        return out

    def forward(
        self, idx: torch.Tensor, cache: Hidden | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (B, T, V) for ids (B, T), continuing from `cache` (updated), or from zeros."""
        out = self.hidden_states(idx, cache)
        out = self.drop(out[:, -1:] if last_only else out)
        return self.lm_head(out)
