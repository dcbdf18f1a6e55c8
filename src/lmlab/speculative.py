"""Speculative decoding for one stream: guess several tokens, let the model check them at once.

Decoding one sequence on a CPU is bound by memory: each step reads every weight to compute one
token. Reading k + 1 tokens in one forward pass costs little more than reading one, so a
proposer guesses the next k tokens (the drafts), the model reads the last token and the drafts
together, and its logits at every position say which drafts it agrees with (Leviathan et al.
2023; Chen et al. 2023). Each step keeps the longest agreeing prefix of the drafts plus one token
of the model's own, and takes the model's state back past the rejected drafts
(`LanguageModel.truncate`). Two proposers:

- prompt lookup: the tokens that followed the latest earlier occurrence of the text's last
  n-gram, in the prompt or the answer so far (as vLLM's n-gram speculation, llama.cpp's lookup
  decoding and Hugging Face's `prompt_lookup_num_tokens`): free, and right whenever the answer
  copies its input (rewrite, extract, quote, summarise a given text);
- a draft model: a smaller model with the same tokenizer drafts k tokens one by one.

Every token is chosen by `Sequence.next_token`, as in plain decoding, with the same penalties,
stop strings, token budget and log-probabilities. Greedy decoding gives the same tokens as
without speculation; sampling keeps or replaces each draft by the speculative-sampling rule
(`lmlab.sampling.verify_draft`), so the samples come from the same distribution.

    spec = Speculation.create(lm, "prompt-lookup")
    for chunk in decode(lm, prompt_ids, sequence, spec): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel, State, common_prefix
from lmlab.sampling import draw, one_cpu_thread, probabilities

if TYPE_CHECKING:
    from pathlib import Path

    from lmlab.decode import Chunk, Sequence
    from lmlab.text.tokenizer import Tokenizer

METHODS = ("prompt-lookup", "draft-model")
# drafts per step when not given: prompt lookup drafts are free, a draft model's cost a step
# each. Prompt lookup, benchmarks/speculative.py (AMD EPYC, 2 cores, load ~1.7): 4 drafts
# 1.28x on input-grounded requests, 8 1.22x, 12 1.45x, 16 1.44x; 1.00x open-ended with each
NUM_DRAFT = {"prompt-lookup": 12, "draft-model": 4}
# n-gram sizes prompt lookup matches, as vLLM's defaults (prompt_lookup_min/max)
PROMPT_LOOKUP_MIN = PROMPT_LOOKUP_MAX = 5


@dataclass
class Speculation:
    """How one stream speculates: the method, the drafts per step and the draft model.

    Args:
        method: "prompt-lookup" or "draft-model".
        num_draft: most tokens drafted per step.
        draft_lm: the draft model (method "draft-model").
        prompt_lookup_min, prompt_lookup_max: the n-gram sizes prompt lookup matches; the
            longest that occurs earlier wins.
    """

    method: str
    num_draft: int
    draft_lm: LanguageModel | None = None
    prompt_lookup_min: int = PROMPT_LOOKUP_MIN
    prompt_lookup_max: int = PROMPT_LOOKUP_MAX

    @classmethod
    def create(
        cls,
        lm: LanguageModel,
        speculative: str | None = None,
        draft_model: str | Path | LanguageModel | None = None,
        num_draft: int | None = None,
        *,
        backend: str = "auto",
    ) -> Speculation | None:
        """The checked speculation settings for `lm` (None: none asked for).

        `draft_model` alone means method "draft-model". A model that cannot take its state
        back, or a draft model with another tokenizer, is a one-line LmlabError.
        """
        if speculative is None and draft_model is None:
            if num_draft is not None:
                raise LmlabError(
                    "num_draft goes with speculative='prompt-lookup' or a draft_model",
                    param="num_draft",
                )
            return None
        method = speculative or "draft-model"
        if method not in METHODS:
            raise LmlabError(
                f"speculative must be one of {', '.join(METHODS)}, not {method!r}",
                param="speculative",
            )
        if (method == "draft-model") != (draft_model is not None):
            raise LmlabError(
                "speculative decoding by a draft model needs draft_model (and prompt lookup "
                "takes none)",
                param="draft_model",
            )
        if num_draft is not None and not 1 <= num_draft <= 64:
            raise LmlabError(f"num_draft must be in 1..64, got {num_draft}", param="num_draft")
        _check_can_speculate(lm, "the model")
        draft_lm = None
        if draft_model is not None:
            from lmlab.models import load_lm

            draft_lm = load_lm(draft_model, backend=backend)
            _check_can_speculate(draft_lm, "the draft model")
            if not same_tokenizer(lm.tokenizer, draft_lm.tokenizer):
                raise LmlabError(
                    f"the draft model {draft_lm.name!r} has another tokenizer than "
                    f"{lm.name!r}; a draft model must share the model's vocabulary",
                    param="draft_model",
                )
        return cls(method, num_draft or NUM_DRAFT[method], draft_lm)

    def describe(self) -> str:
        """E.g. "speculatively: prompt lookup (5-grams), up to 8 drafts a step"."""
        if self.draft_lm is not None:
            by = f"draft model {self.draft_lm.name}"
        else:
            sizes = {self.prompt_lookup_min, self.prompt_lookup_max}
            by = f"prompt lookup ({'-'.join(map(str, sorted(sizes)))}-grams)"
        return f"speculatively: {by}, up to {self.num_draft} drafts a step"

    def proposer(self, lm: LanguageModel) -> PromptLookup | DraftModel:
        """A new proposer for one sequence decoded by `lm` (close it when the sequence ends)."""
        if self.draft_lm is not None:
            return DraftModel(self.draft_lm, lm.vocab_size)
        return PromptLookup(self.prompt_lookup_min, self.prompt_lookup_max)


def _check_can_speculate(lm: LanguageModel, what: str) -> None:
    if not lm.can_truncate():
        raise LmlabError(
            f"speculative decoding needs a model that can take its state back past rejected "
            f"tokens; {what} {lm.name!r} ({type(lm).__name__}) cannot: use the llama or torch "
            "backend on a Transformer",
            param="speculative",
        )


def same_tokenizer(a: Tokenizer, b: Tokenizer) -> bool:
    """Whether two tokenizers give the same ids: same size, end-of-text ids, a probe text's ids
    and the text of every 97th token."""
    if a.vocab_size != b.vocab_size or a.eos_ids != b.eos_ids:
        return False
    probe = "Speculative decoding: the draft's ids must mean the model's. Ünïcödé 1234 \n\t{}"
    if a.encode(probe) != b.encode(probe):
        return False
    return all(a.id_to_token(i) == b.id_to_token(i) for i in range(0, a.vocab_size, 97))


class PromptLookup:
    """Proposes the tokens that followed the latest earlier occurrence of the text's last n
    tokens, for the largest n in [n_min, n_max] that occurs earlier."""

    def __init__(self, n_min: int = PROMPT_LOOKUP_MIN, n_max: int = PROMPT_LOOKUP_MAX) -> None:
        self.n_min, self.n_max = n_min, n_max

    def propose(
        self, seq: Sequence, context: list[int], limit: int
    ) -> tuple[list[int], torch.Tensor | None]:
        """Up to `limit` draft tokens after `context`, and the distribution they were drawn
        from (None: a point mass on each)."""
        return lookup(context, self.n_min, self.n_max, limit), None

    def close(self) -> None:
        """Nothing to free."""


def lookup(ids: list[int], n_min: int, n_max: int, k: int) -> list[int]:
    """The (up to) k tokens that followed the latest earlier occurrence of the last n of `ids`,
    for the largest n in [n_min, n_max] that has one; [] when none has."""
    L = len(ids)
    if k < 1 or len(ids) <= n_min:
        return []
    a = np.asarray(ids)
    for n in range(min(n_max, L - 1), n_min - 1, -1):
        # the windows of n tokens that start before the last n-gram itself: (L - n, n)
        windows = np.lib.stride_tricks.sliding_window_view(a[:-1], n)
        hits = np.flatnonzero((windows == a[L - n :]).all(axis=1))
        if hits.size:
            start = int(hits[-1]) + n
            return a[start : start + k].tolist()
    return []


class DraftModel:
    """Proposes tokens drawn one by one from a smaller model with the same tokenizer.

    Its state follows the sequence: at each proposal it is taken back to what it shares with the
    text (the drafts the model rejected go) and reads the rest.
    """

    def __init__(self, lm: LanguageModel, width: int) -> None:
        self.lm, self.width = lm, width  # width: the model's logits, which q must match
        self.state: State | None = None
        self.read: list[int] = []  # the tokens `state` holds

    def propose(
        self, seq: Sequence, context: list[int], limit: int
    ) -> tuple[list[int], torch.Tensor | None]:
        """Up to `limit` draft tokens after `context` and (sampling) their distributions (k, V);
        greedy decoding drafts the draft model's argmax, and needs no distribution."""
        if limit < 1 or len(context) + limit > self.lm.context_length:
            return [], None
        if self.state is None:
            self.state = self.lm.new_state(1)
        n = common_prefix(self.read, context[:-1])
        if n < self.state.length:
            self.lm.truncate(self.state, n)
        logits = self.lm.forward(self.state, torch.tensor([context[n:]]))[0]
        drafts, qs = [], []
        while True:
            x, q = self._draw(logits, seq)
            drafts.append(x)
            qs.append(q)
            if len(drafts) == limit or x in seq.eos:
                break
            logits = self.lm.forward(self.state, torch.tensor([[x]]))[0]
        self.read = context + drafts[:-1]
        return drafts, None if seq.p.greedy else torch.stack(qs)

    def _draw(self, logits: torch.Tensor, seq: Sequence) -> tuple[int, torch.Tensor | None]:
        logits = logits[: self.width]  # a draft vocabulary padded wider than the model's
        with one_cpu_thread():
            if seq.p.greedy:
                return int(logits.argmax()), None
            q = probabilities(logits[None], seq.p)[0]
            q = torch.nn.functional.pad(q, (0, self.width - q.shape[0]))
            return int(draw(q[None], seq.generator)[0]), q

    def close(self) -> None:
        """Free the draft model's state."""
        if self.state is not None:
            self.lm.release(self.state)
            self.state, self.read = None, []


def step(
    lm: LanguageModel,
    state: State,
    seq: Sequence,
    proposer: PromptLookup | DraftModel,
    num_draft: int,
) -> list[Chunk]:
    """One speculative step of a sequence whose state holds all its text but the last token.

    Reads the last token and the drafts in one forward pass, chooses tokens position by
    position while they agree with the drafts, and takes the state back past the rejected ones.
    Returns the chunks of the tokens chosen (at least one).
    """
    context = seq.prompt + seq.token_ids
    # no draft past the token budget: the step's own token comes after the drafts
    limit = min(num_draft, seq.budget - len(seq.token_ids) - 1)
    drafts, q = proposer.propose(seq, context, limit) if limit > 0 else ([], None)
    start = state.length
    ids = torch.tensor([[context[-1], *drafts]])
    # without drafts, a plain step: the same computation as plain decoding's
    rows = lm.forward(state, ids, all_positions=True)[0] if drafts else lm.forward(state, ids)
    chunks = []
    for i, row in enumerate(rows):
        draft = drafts[i] if i < len(drafts) else None
        tid, logprob = seq.next_token(row, draft, None if q is None or draft is None else q[i])
        chunks.append(seq.add(tid, logprob))
        if seq.finish_reason or tid != draft:
            break
    if state.length > start + len(chunks):  # the state keeps the last token and kept drafts
        lm.truncate(state, start + len(chunks))
    return chunks


def decode(
    lm: LanguageModel, prompt: list[int], seq: Sequence, speculation: Speculation
) -> Iterator[Chunk]:
    """Generate one sequence with speculative steps, yielding its chunks as they come."""
    state = lm.new_state(1)
    proposer = speculation.proposer(lm)
    try:
        # the prompt and the first token as plain decoding reads and picks them
        logits = lm.forward(state, torch.tensor([prompt]))[0]
        yield seq.add(*seq.next_token(logits))
        while not seq.finish_reason:
            yield from step(lm, state, seq, proposer, speculation.num_draft)
    finally:
        proposer.close()
        lm.release(state)
