"""A sequence-to-sequence model served as a language model: `lmlab serve --model RUN`.

The server's engine steps LanguageModels over prompt ids. A seq2seq model becomes one over the
stream "source ids, end of source, target ids": the prompt is the source (a completion's
`prompt`; a chat's last user message) followed by the end token, and what is generated after it
is the target, ending with the end token. While a row reads its source, nothing is computed
(its logits are zeros, never sampled); the end token encodes the source and starts the
decoder from the target's start token, so the engine's continuous batching, streaming, stop
strings and logprobs all apply to translations. Sampling fields a request leaves out take
temperature 0 (greedy translation).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel, State
from lmlab.sampling_defaults import SamplingDefaults
from lmlab.seq2seq.model import Seq2Seq
from lmlab.text.tokenizer import Tokenizer

GREEDY = SamplingDefaults(temperature=0.0, source="model (greedy translation)")


def is_seq2seq(spec: str | Path) -> bool:
    """Whether a served model spec is a seq2seq run or a Hugging Face encoder-decoder folder."""
    import json

    from lmlab.runs import RUN_FILE, is_run

    folder = Path(spec)
    try:
        if is_run(folder):
            return json.loads((folder / RUN_FILE).read_text()).get("kind") == "seq2seq"
        if folder.is_dir() and (folder / "config.json").is_file():
            return bool(json.loads((folder / "config.json").read_text()).get("is_encoder_decoder"))
    except (OSError, ValueError):
        return False
    return False


def source_ids(s2s: Seq2Seq, text: str) -> list[int]:
    """The source's ids ending with the end token, as the model reads a source."""
    if hasattr(s2s, "source_ids"):  # a Hugging Face model: its tokenizer's special tokens
        return s2s.source_ids(text)
    return [*s2s.tokenizer.encode(text), s2s.end_id]


class SourceTokenizer(Tokenizer):
    """The model's tokenizer, but a prompt is a source: encoding it with special tokens (a
    completion's prompt) ends it with the end token, and a chat renders as its last user
    message followed by the end token's text."""

    def __init__(self, s2s: Seq2Seq) -> None:
        self.s2s, self.inner = s2s, s2s.tokenizer
        self.word_start = self.inner.word_start

    @property
    def vocab_size(self) -> int:
        return self.inner.vocab_size

    @property
    def special_ids(self) -> frozenset[int]:
        return self.inner.special_ids

    @property
    def eos_ids(self) -> frozenset[int]:
        return frozenset({self.s2s.end_id})

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        if add_special_tokens:
            return source_ids(self.s2s, text)
        return self.inner.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.inner.encode_batch(texts)

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        return self.inner.id_to_token(token_id)

    def render_chat(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The last user message, then the end token: the source to translate."""
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise LmlabError("a translation model needs a user message: the text to translate")
        return users[-1] + self.inner.id_to_token(self.s2s.end_id)


class SourceState(State):
    """A row's source while it is read, then the decoder's cache."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.source: list[list[int]] = [[] for _ in range(batch_size)]
        self.cache = None


class SourceThenTarget(LanguageModel):
    """P(source, end, target) read as one stream; only the target's tokens are predicted."""

    sampling_defaults = GREEDY

    def __init__(self, s2s: Seq2Seq) -> None:
        self.s2s, self.name = s2s, s2s.name
        self.tokenizer = SourceTokenizer(s2s)
        self.context_length = 2 * s2s.model.config.context
        self._vocab_size = s2s.model.config.vocab_size
        self.device = next(s2s.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def new_state(self, batch_size: int = 1) -> SourceState:
        return SourceState(batch_size)

    @torch.inference_mode()
    def forward(
        self, state: SourceState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        B, T = token_ids.shape
        state.length += T
        pieces = []
        ids = token_ids.tolist()
        if state.cache is None:
            ends = [row.index(self.s2s.end_id) if self.s2s.end_id in row else T for row in ids]
            if len(set(ends)) > 1:
                raise LmlabError("the rows of a state must end their sources together")
            k = ends[0]
            for row, source in zip(ids, state.source, strict=True):
                source.extend(row[:k])
            pieces.append(torch.zeros(B, k, self.vocab_size))  # the source is not predicted
            if k == T:
                out = torch.cat(pieces, 1)
                return out if all_positions else out[:, -1]
            state.cache = self._start(state.source)
            ids = [[self.s2s.start_id, *row[k + 1 :]] for row in ids]
        logits = self.s2s.model.decode(torch.tensor(ids, device=self.device), cache=state.cache,
                                       last_only=not all_positions)  # fmt: skip
        pieces.append(logits.float().cpu())
        out = torch.cat(pieces, 1)
        return out if all_positions else out[:, -1]

    def _start(self, sources: list[list[int]]):
        """The decoding cache of the sources (each followed by the end token)."""
        limit = self.s2s.model.config.context
        if max(map(len, sources)) + 1 > limit:
            raise LmlabError(
                f"the source has {max(map(len, sources)) + 1} tokens; this model reads at most "
                f"{limit}",
                param="prompt",
            )
        src = torch.tensor([[*s, self.s2s.end_id] for s in sources], device=self.device)
        keep = torch.ones_like(src)
        return self.s2s.model.new_cache(self.s2s.model.encode(src, keep), keep)


def load_served(spec: str | Path) -> SourceThenTarget:
    """A seq2seq run or Hugging Face encoder-decoder folder, as the server serves it."""
    from lmlab.seq2seq.model import load_seq2seq

    return SourceThenTarget(load_seq2seq(spec))
