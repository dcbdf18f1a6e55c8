"""The LanguageModel interface: a distribution over the next token given the context.

Every model in lmlab (pretrained transformers, GGUF through llama.cpp, and later n-gram and
from-scratch neural models) implements this one small contract. Decoding, scoring, chat and the
server are written once against it.

    state = lm.new_state(batch_size=2)          # empty context for 2 rows
    logits = lm.forward(state, ids)             # ids: (2, T) -> logits (2, V) of the next token
    logits = lm.forward(state, next_ids[:, None])  # continue: the past is not recomputed
    lm.release(state)

Logits are unnormalised log-probabilities: `log_softmax(logits)` is the next-token
log-distribution. (A model that already has probabilities returns their logs.)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from lmlab.errors import LmlabError
from lmlab.sampling_defaults import LLAMA_CPP, SamplingDefaults
from lmlab.text.tokenizer import Tokenizer

if TYPE_CHECKING:  # torch is imported by the models that compute with it, not by the interface
    import torch


class CacheFull(LmlabError):
    """The KV cache shared by a model's sequences has no room for this step; nothing of the
    step was read (the server then pauses a sequence to free room and tries again)."""


class State:
    """What a model remembers about the rows it has read (KV cache, hidden state, n-gram history).

    `length` counts the tokens each row has consumed; all rows of a state advance together.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.length = 0


class LanguageModel(ABC):
    """A tokenizer plus next-token logits for a batch of contexts, read incrementally."""

    name: str
    tokenizer: Tokenizer
    context_length: int  # the most tokens a row may hold (prompt + generated)
    max_batch_size: int = 64  # rows one state may hold
    # what sampling fields a call leaves out take: the model's recommended settings where its
    # files or model card give them (backends and `load_lm` set this), else llama.cpp's
    sampling_defaults: SamplingDefaults = LLAMA_CPP

    @property
    def vocab_size(self) -> int:
        """Width of the logits (can exceed the tokenizer's size when the model pads it)."""
        return self.tokenizer.vocab_size

    @abstractmethod
    def new_state(self, batch_size: int = 1) -> State:
        """An empty context for `batch_size` rows."""

    @abstractmethod
    def forward(
        self, state: State, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        """Read `token_ids` (B, T) after what `state` holds; return float32 logits.

        Returns (B, V) for the token after the last one, or (B, T, V) for every position when
        `all_positions` (scoring). Advances `state` by T.
        """

    def forward_each(self, states: list[State], token_ids: list[list[int]]) -> torch.Tensor:
        """Advance independent one-row states, each by its own tokens; return (len(states), V).

        The server's engine calls this to step many requests together. States that hold a
        context and read one token go to `step_each` together where the model can
        (`can_step`); prompts are read one by one (prefill is compute-bound: batching it gains
        little on a CPU). Backends that mix prompts and steps in one batch (llama.cpp) override
        this.
        """
        import torch

        out: list[torch.Tensor | None] = [None] * len(states)
        stepping = []
        for i, (state, ids) in enumerate(zip(states, token_ids, strict=True)):
            if len(ids) == 1 and state.length > 0 and self.can_step(state):
                stepping.append(i)
            else:
                out[i] = self.forward(state, torch.tensor([ids]))[0]
        if stepping:
            logits = self.step_each([states[i] for i in stepping], [token_ids[i] for i in stepping])
            for i, row in zip(stepping, logits, strict=True):
                out[i] = row
        return torch.stack(out)

    def can_step(self, state: State) -> bool:
        """Whether `step_each` can take this one-row state (none can, by default)."""
        return False

    def step_each(self, states: list[State], token_ids: list[list[int]]) -> torch.Tensor:
        """Advance one-row states that hold a context by one token each, in one batch: (B, V)."""
        raise NotImplementedError

    def share_prefix(self, state: State, token_ids: list[int]) -> int:
        """Start a fresh one-row state on the cached keys and values of the longest prefix of
        `token_ids` that another sequence holds (never the last token, whose logits are
        wanted); how many tokens the state now holds, which the caller then skips. This default
        shares nothing."""
        return 0

    def can_truncate(self) -> bool:
        """Whether `truncate` can take one-row states back to an earlier length (speculative
        decoding needs it; no model can, by default)."""
        return False

    def truncate(self, state: State, length: int) -> None:
        """Forget what a one-row `state` read after its first `length` tokens, as if it had
        never read them (speculative decoding drops the draft tokens the model rejected)."""
        raise LmlabError(f"{type(self).__name__} cannot take a state back to an earlier length")

    def release(self, state: State) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Free what `state` holds (KV slots of a shared cache); the state is not used again."""

    def forget_released(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Drop what released states left for prefix reuse. With no live state, the next one
        then starts on an empty cache, as the first did: a seeded request repeats its samples.
        (llama.cpp's rounding depends on where a sequence's cells lie among others: logits of
        the same prompt moved by up to 1.0 after another request had left holes.)"""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, context_length={self.context_length})"


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two lists share (prefix reuse looks for the longest)."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)
