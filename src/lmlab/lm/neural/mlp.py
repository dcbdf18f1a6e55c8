"""The feed-forward neural language model of Bengio et al. (2003), in one file.

P(w_t | w_{t-n+1} .. w_{t-1}): the n-1 previous tokens are looked up in one shared embedding
matrix C, their vectors are concatenated into x, and

    y = b + W x + U tanh(d + H x)

gives the logits of the next token (W x, the "direct connections" from the input to the output,
are optional; the paper found them to speed up learning). Like an n-gram model it sees a fixed
window; unlike one, similar words get similar vectors, so it generalises to unseen n-grams.
Positions before the start of a text are filled with the end-of-text id (0), as n-gram models
pad with <s>.

Shapes: B batch, T time, N = n - 1 (window), m = n_embd, h = n_hidden, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PAD = 0  # the end-of-text token: what comes "before" a text


@dataclass
class MLPConfig:
    vocab_size: int = 10000
    context: int = 4  # n - 1: the tokens the model sees (a 5-gram model)
    n_embd: int = 60  # m, the size of a token's vector (Bengio et al.: 30 to 100)
    n_hidden: int = 100  # h, the tanh layer
    direct: bool = False  # the direct input -> output connections W x
    dropout: float = 0.0
    block: int = 64  # tokens per training sequence (each predicted from its own window)


PRESETS = {
    "tiny": dict(context=3, n_embd=16, n_hidden=32, block=32),
    "bengio-ap": dict(context=5, n_embd=60, n_hidden=100, direct=True),  # n = 6, AP News
}


class Window:
    """The last n-1 token ids of every row (B, N); starts as end-of-text padding."""

    def __init__(self, ids: torch.Tensor, rows: list[Window] | None = None) -> None:
        self.ids = ids
        self.rows = rows or []  # a joined window: the one-row windows it stands for

    def detach_(self) -> None:  # nothing to cut: the window holds ids, not activations
        pass

    @classmethod
    def join(cls, rows: list[Window]) -> Window:
        """One window over the one-row windows of sequences stepped together (the server);
        `split` hands each row its part afterwards."""
        return cls(torch.cat([r.ids for r in rows]), rows)

    def split(self) -> None:
        """Give each joined row its part of the window the batched step left."""
        for b, row in enumerate(self.rows):
            row.ids = self.ids[b : b + 1]


class MLPLM(nn.Module):
    """Bengio's neural probabilistic language model: ids (B, T) -> logits (B, T, V)."""

    carries_state = False  # trained on independent random sequences
    bounded_context = False  # reads any length: only the last n-1 tokens matter

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.sequence_length = config.block
        N, m = config.context, config.n_embd
        self.C = nn.Embedding(config.vocab_size, m)  # shared by all window positions
        self.H = nn.Linear(N * m, config.n_hidden)  # its bias is d
        self.U = nn.Linear(config.n_hidden, config.vocab_size)  # its bias is b
        self.W = nn.Linear(N * m, config.vocab_size, bias=False) if config.direct else None
        self.drop = nn.Dropout(config.dropout)

    def new_cache(self, batch_size: int) -> Window:
        pad = torch.full((batch_size, self.config.context), PAD, device=self.C.weight.device)
        return Window(pad)

    def _inputs(self, idx: torch.Tensor, cache: Window | None, last_only: bool) -> torch.Tensor:
        """x (B, T, N*m): the concatenated vectors of the n-1 tokens ending at each idx[:, t]."""
        B, N = idx.shape[0], self.config.context
        past = cache.ids if cache is not None else idx.new_full((B, N), PAD)
        full = torch.cat([past, idx], dim=1)  # (B, N + T)
        if cache is not None:
            cache.ids = full[:, -N:]
        # windows[:, t] = full[:, t+1 .. t+N]: the N tokens ending at idx[:, t]
        windows = full.unfold(1, N, 1)[:, 1:]  # (B, T, N)
        if last_only:
            windows = windows[:, -1:]
        return self.drop(self.C(windows).flatten(2))

    def hidden_states(self, idx: torch.Tensor, cache: Window | None = None) -> torch.Tensor:
        """The tanh layer tanh(d + H x) at every position: (B, T, h)."""
        return torch.tanh(self.H(self._inputs(idx, cache, last_only=False)))

    def forward(
        self, idx: torch.Tensor, cache: Window | None = None, *, last_only: bool = False
    ) -> torch.Tensor:
        """Logits (B, T, V): row t predicts the token after idx[:, t] from the n-1 up to it."""
        x = self._inputs(idx, cache, last_only)
        y = self.U(self.drop(torch.tanh(self.H(x))))
        if self.W is not None:
            y = y + self.W(x)
        return y
