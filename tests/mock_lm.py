"""A tiny LanguageModel for decoding tests: byte tokenizer, logits from a fixed table.

Tokens are the 256 bytes plus an end-of-text id (256). The next-token logits depend only on the
last token, through a seeded random table (a bigram model), so runs are fast and deterministic.
"""

from __future__ import annotations

import torch

from lmlab.lm.base import LanguageModel, State
from lmlab.text.tokenizer import Tokenizer

EOS = 256


class ByteTokenizer(Tokenizer):
    eos_token = "<eos>"

    @property
    def vocab_size(self) -> int:
        return 257

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset({EOS})

    @property
    def eos_ids(self) -> frozenset[int]:
        return frozenset({EOS})

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        data = bytes(i for i in ids if i != EOS)
        tail = "" if skip_special_tokens or EOS not in ids else "<eos>"
        return data.decode("utf-8", "replace") + tail

    def id_to_token(self, token_id: int) -> str:
        return "<eos>" if token_id == EOS else bytes([token_id]).decode("latin-1")


class LastTokenState(State):
    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.last: torch.Tensor | None = None


class BigramLM(LanguageModel):
    """Logits = table[last token]; `table` may be given to force a distribution."""

    def __init__(self, table: torch.Tensor | None = None, context_length: int = 512) -> None:
        self.name = "bigram-mock"
        self.tokenizer = ByteTokenizer()
        self.context_length = context_length
        gen = torch.Generator().manual_seed(0)
        self.table = table if table is not None else torch.randn(257, 257, generator=gen) * 3
        self.calls: list[tuple[int, int]] = []  # (rows, new tokens) per forward

    def new_state(self, batch_size: int = 1) -> LastTokenState:
        return LastTokenState(batch_size)

    def forward(self, state, token_ids, *, all_positions=False):
        self.calls.append(tuple(token_ids.shape))
        state.length += token_ids.shape[1]
        if not all_positions:
            return self.table[token_ids[:, -1]]  # (B, V)
        return self.table[token_ids]  # (B, T, V)

    def can_truncate(self) -> bool:
        return True

    def truncate(self, state, length):  # the logits depend on the token read alone
        state.length = length


def load_run(folder) -> BigramLM:
    """A run loader (lmlab.runs.RUN_KINDS) for tests of run directories."""
    return BigramLM()
