"""Text generation, written once against the LanguageModel interface.

`generate` reads the prompt once (prefill), then asks the model for one more token per step,
reusing its state (KV cache or hidden state): nothing already read is recomputed. Samples are
decoded as a batch of rows. Text is detokenized incrementally, so streamed pieces never split a
UTF-8 character, and text that could begin a stop string is held back until it is decided.

`chat` renders OpenAI-style messages with the model's chat template and calls `generate`.
`generate_stream` and `chat_stream` are their streaming forms: they yield Chunks as they come
(one function, one return type).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmlab.deprecation import deprecated
from lmlab.errors import LmlabError
from lmlab.json_mode import JsonObjectPrefix
from lmlab.lm.base import LanguageModel
from lmlab.reprs import brief_repr
from lmlab.sampling import (
    SamplingParams,
    apply_penalties,
    choose,
    one_cpu_thread,
    verify_draft,
)
from lmlab.sampling_defaults import check_choice, choose_defaults
from lmlab.speculative import Speculation
from lmlab.speculative import decode as speculative_decode
from lmlab.text.tokenizer import Tokenizer


@dataclass
class TopLogprob:
    """One alternative at a step: its text, id and log-probability (nats)."""

    token: str
    id: int
    logprob: float


@dataclass
class TokenLogprob:
    """The chosen token at a step and, if asked, the most likely alternatives."""

    token: str
    id: int
    logprob: float
    top_logprobs: list[TopLogprob] = field(default_factory=list)


@dataclass(repr=False)
class Choice:
    """One sample: its text, the generated ids (end-of-text token included) and why it ended."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end-of-text token or stop string) or "length"
    logprobs: list[TokenLogprob] | None = None

    def __repr__(self) -> str:  # the text and counts, not every id and log-probability
        return brief_repr(
            self,
            index=self.index,
            text=self.text,
            tokens=len(self.token_ids),
            finish_reason=self.finish_reason,
        )


@dataclass(repr=False)
class Generation:
    """The result of `generate`: one Choice per sample; the first is also reachable directly.
    Its repr shows the first sample's text and the token counts; the ids are attributes."""

    choices: list[Choice]
    prompt_token_ids: list[int]

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def token_ids(self) -> list[int]:
        return self.choices[0].token_ids

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def logprobs(self) -> list[TokenLogprob] | None:
        return self.choices[0].logprobs

    @property
    def usage(self) -> dict[str, int]:
        completion = sum(len(c.token_ids) for c in self.choices)
        prompt = len(self.prompt_token_ids)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def to_dict(self) -> dict:
        return {"choices": [asdict(c) for c in self.choices], "usage": self.usage}

    def __repr__(self) -> str:
        several = len(self.choices) > 1
        return brief_repr(
            self,
            text=self.text,
            finish_reason=self.finish_reason,
            prompt_tokens=len(self.prompt_token_ids),
            completion_tokens=self.usage["completion_tokens"],
            choices=len(self.choices) if several else None,
        )


@dataclass
class Chunk:
    """A streamed piece of sample `index`: new text, the token(s) behind it, and the end."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None

    def __str__(self) -> str:
        return self.text


class Detokenizer:
    """Incremental decoding: the new text each token adds, without splitting characters.

    Decodes a short window of recent ids twice (with and without the newest) and keeps the
    difference; a trailing U+FFFD means a character is still incomplete, so we wait.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # start of the window
        self.read = 0  # ids before this are already turned into text

    def add(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self.tokenizer.decode(self.ids[self.prefix : self.read])
        after = self.tokenizer.decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""


class Sequence:
    """One sample being generated: how it picks tokens, its text so far, and when it stops.

    The decoding loop (here, or the server's engine) feeds it the model's logits each step;
    `next_token` applies penalties and sampling, `add` turns the token into streamable text.
    """

    def __init__(
        self,
        index: int,
        tokenizer: Tokenizer,
        p: SamplingParams,
        prompt: list[int],
        budget: int,
    ) -> None:
        self.index, self.p, self.tokenizer, self.budget = index, p, tokenizer, budget
        self.eos = set() if p.ignore_eos else set(tokenizer.eos_ids)
        self.eos |= set(p.stop_token_ids)
        # sample i of a seeded request uses seed + i: the same request gives the same samples;
        # any integer is a seed (taken modulo 2^64, the generator's range)
        seed = (p.seed + index) % 2**64 if p.seed is not None else random.randrange(2**63)
        self.generator = torch.Generator().manual_seed(seed)
        self.prompt = prompt
        self.detok = Detokenizer(tokenizer)
        self.token_ids: list[int] = []
        self.text = ""
        self.sent = 0  # characters of text already streamed
        self.finish_reason: str | None = None
        self.logprobs: list[TokenLogprob] | None = [] if p.logprobs else None
        self._seen: torch.Tensor | None = None  # (V,) bool: in prompt or output
        self._counts: torch.Tensor | None = None  # (V,) occurrences in the output
        self._json = JsonObjectPrefix() if p.json_object else None
        self._json_text = ""  # the text the JSON automaton has read

    def next_token(
        self, logits: torch.Tensor, draft: int | None = None, q: torch.Tensor | None = None
    ) -> tuple[int, TokenLogprob | None]:
        """Choose the next token from this step's (V,) logits (on one CPU thread: see
        `one_cpu_thread`). Where a draft proposed `draft` (drawn from `q`, None: a point mass),
        the choice keeps or replaces it by the speculative-sampling rule (`verify_draft`), so
        the token comes from the same distribution as without a draft."""
        with one_cpu_thread():
            return self._next_token(logits, draft, q)

    def _next_token(
        self, logits: torch.Tensor, draft: int | None, q: torch.Tensor | None
    ) -> tuple[int, TokenLogprob | None]:
        p = self.p
        scores = logits
        if p.penalized:
            if self._seen is None:
                self._seen = torch.zeros(logits.shape[-1], dtype=torch.bool)
                self._seen[self.prompt] = True
                self._counts = torch.zeros(logits.shape[-1])
            scores = apply_penalties(logits, self._seen, self._counts, p)
        if self._json is not None:
            tid = self._choose_json(scores)
        elif draft is not None:
            tid = verify_draft(scores, p, draft, q, self.generator)
        else:
            tid = int(choose(scores[None], p, self.generator)[0])
        if p.penalized:
            self._seen[tid] = True
            self._counts[tid] += 1
        if not p.logprobs:
            return tid, None
        logp = logits.log_softmax(dim=-1)
        top = top_logprobs(logp, p.top_logprobs, self.tokenizer) if p.top_logprobs else []
        token = self.tokenizer.decode([tid], skip_special_tokens=False)
        return tid, TokenLogprob(token, tid, float(logp[tid]), top)

    def _choose_json(self, scores: torch.Tensor, draws: int = 32) -> int:
        """Draw a token that keeps the text a valid JSON-object prefix (masking the others)."""
        scores = scores.clone()
        for _ in range(draws):
            tid = int(choose(scores[None], self.p, self.generator)[0])
            if self._json_accepts(tid):
                return tid
            scores[tid] = float("-inf")
        # the model keeps insisting on invalid tokens: take the most likely valid one
        for tid in torch.argsort(scores, descending=True)[:8192].tolist():
            if self._json_accepts(tid):
                return tid
        return next(iter(self.eos)) if self.eos else tid

    def _json_accepts(self, tid: int) -> bool:
        """Feed `tid`'s text to a copy of the JSON automaton; keep the copy if it is valid."""
        if tid in self.eos:
            return self._json.complete
        if self.p.json_object and tid in self.tokenizer.special_ids:
            return False
        text = self.tokenizer.decode([*self.token_ids, tid])
        if text.startswith(self._json_text):
            state, new = self._json.copy(), text[len(self._json_text) :]
        else:  # an earlier partial character resolved differently: read it all again
            state, new = JsonObjectPrefix(), text
        if not state.feed_text(new):
            return False
        self._json, self._json_text = state, text
        return True

    def add(self, token_id: int, logprob: TokenLogprob | None = None) -> Chunk:
        """Take the next token; return the piece of text it releases."""
        self.token_ids.append(token_id)
        if logprob is not None:
            self.logprobs.append(logprob)
        if token_id in self.eos:
            self.finish_reason = "stop"
        else:
            start = max(0, len(self.text) - max((len(s) for s in self.p.stop), default=0))
            self.text += self.detok.add(token_id)
            cut = _find_stop(self.text, self.p.stop, start)
            if cut is not None:
                self.text, self.finish_reason = self.text[:cut], "stop"
            elif self._json is not None and self._json.complete:
                self.finish_reason = "stop"  # the JSON object is closed
            elif len(self.token_ids) >= self.budget:
                self.finish_reason = "length"
        upto = len(self.text) if self.finish_reason else len(self.text) - self._held_back()
        piece, self.sent = self.text[self.sent : upto], max(self.sent, upto)
        return Chunk(
            self.index, piece, [token_id], self.finish_reason, [logprob] if logprob else None
        )

    def _held_back(self) -> int:
        """Length of the longest end of the text that could still grow into a stop string."""
        longest = 0
        for s in self.p.stop:
            for k in range(min(len(s) - 1, len(self.text)), longest, -1):
                if self.text.endswith(s[:k]):
                    longest = k
                    break
        return longest

    def choice(self) -> Choice:
        return Choice(self.index, self.text, self.token_ids, self.finish_reason, self.logprobs)


def _find_stop(text: str, stops: list[str], start: int) -> int | None:
    """Index of the earliest stop string in text[start:], or None."""
    hits = [i for s in stops if (i := text.find(s, start)) >= 0]
    return min(hits) if hits else None


def encode_prompt(lm: LanguageModel, prompt: str | list[int]) -> list[int]:
    """Prompt ids: text is tokenized with the model's sequence-start tokens (BOS if it uses one)."""
    if isinstance(prompt, str):
        ids = lm.tokenizer.encode(prompt, add_special_tokens=True)
    else:
        ids = [int(i) for i in prompt]
        if any(not 0 <= i < lm.vocab_size for i in ids):
            raise LmlabError(f"token ids must be in [0, {lm.vocab_size})", param="prompt")
    if not ids:
        raise LmlabError(
            "the prompt is empty (and this model has no beginning-of-text token to start from)",
            param="prompt",
        )
    if len(ids) >= lm.context_length:
        raise LmlabError(
            f"the prompt has {len(ids)} tokens; the model's context window is "
            f"{lm.context_length}, which leaves no room to generate",
            param="prompt",
        )
    return ids


def new_sequences(
    lm: LanguageModel,
    prompt: list[int],
    p: SamplingParams,
    first: int = 0,
    count: int | None = None,
) -> list[Sequence]:
    """Sequences `first .. first + count - 1` of a request (all n of them by default).

    Sampling fields `p` leaves out take the model's defaults (`lm.sampling_defaults`) unless
    the caller filled them already (`generate`'s or the server's `sampling_defaults` choice).
    """
    p = p.with_defaults(lm.sampling_defaults)
    budget = min(p.max_tokens, lm.context_length - len(prompt))
    count = p.n - first if count is None else count
    return [Sequence(i, lm.tokenizer, p, prompt, budget) for i in range(first, first + count)]


def top_logprobs(logp: torch.Tensor, k: int, tokenizer: Tokenizer) -> list[TopLogprob]:
    """The k likeliest tokens of a (V,) row of log-probabilities, likeliest first."""
    values, ids = torch.topk(logp, k)
    return [
        TopLogprob(tokenizer.decode([i], skip_special_tokens=False), i, v)
        for v, i in zip(values.tolist(), ids.tolist(), strict=True)
    ]


def _decode_together(lm: LanguageModel, prompt: list[int], seqs: list[Sequence]) -> Iterator[Chunk]:
    """Generate `seqs` as the rows of one state, yielding each one's pieces as they come."""
    state = lm.new_state(len(seqs))
    try:
        logits = lm.forward(state, torch.tensor([prompt] * len(seqs)))
        while True:
            next_ids = []
            for r, seq in enumerate(seqs):
                if seq.finish_reason:  # finished rows keep pace with a dummy token
                    next_ids.append(seq.token_ids[-1])
                    continue
                tid, lp = seq.next_token(logits[r])
                next_ids.append(tid)
                yield seq.add(tid, lp)
            if all(seq.finish_reason for seq in seqs):
                return
            logits = lm.forward(state, torch.tensor(next_ids)[:, None])
    finally:
        lm.release(state)


def _stream(
    lm: LanguageModel,
    prompt: list[int],
    p: SamplingParams,
    out: list[Sequence] | None = None,
    speculation: Speculation | None = None,
) -> Iterator[Chunk]:
    if p.seed is not None:  # the same samples, whatever was read before
        lm.forget_released()
    if speculation is not None:  # one stream at a time: speculation helps single streams
        for seq in new_sequences(lm, prompt, p):
            if out is not None:
                out.append(seq)
            yield from speculative_decode(lm, prompt, seq, speculation)
        return
    for first in range(0, p.n, lm.max_batch_size):
        seqs = new_sequences(lm, prompt, p, first, min(lm.max_batch_size, p.n - first))
        if out is not None:
            out.extend(seqs)
        yield from _decode_together(lm, prompt, seqs)


def generate(
    model: str | Path | LanguageModel,
    prompt: str | list[int],
    *,
    backend: str = "auto",
    sampling_defaults: str = "model",
    speculative: str | None = None,
    draft_model: str | Path | LanguageModel | None = None,
    num_draft: int | None = None,
    stream: bool = False,
    **options,
) -> Generation:
    """Continue `prompt` with a language model; `generate_stream` yields the text as it comes.

    Args:
        model: a loaded LanguageModel, a bundled name or a path (see `load_lm`).
        prompt: text, or token ids.
        backend: for GGUF names and paths: auto, torch or llama.
        sampling_defaults: what the sampling options left out take: "model" (the model's
            recommended settings, `lm.sampling_defaults`), "llama.cpp" (temperature 0.8, top-k
            40, top-p 0.95, min-p 0.05) or "openai" (temperature 1, no filtering).
        speculative: "prompt-lookup" drafts tokens by copying what followed the text's last
            5-gram earlier in the prompt or answer; the model checks them in one forward pass
            (`lmlab.speculative`). Faster when the answer copies its input; greedy output is
            unchanged, samples come from the same distribution.
        draft_model: speculative decoding whose drafts a smaller model with the same tokenizer
            makes (a loaded LanguageModel, a name or a path; same backend).
        num_draft: most tokens drafted per step (default: 12 by prompt lookup, 4 by a draft
            model).
        stream: deprecated: `stream=True` returns `generate_stream(...)`'s iterator, with a
            DeprecationWarning (one function returns one type).
        **options: SamplingParams fields (max_tokens, temperature, top_k, top_p, min_p,
            repetition_penalty, presence_penalty, frequency_penalty, stop, stop_token_ids,
            seed, n, logprobs, top_logprobs, ignore_eos).

    Returns:
        A Generation (`.text`, `.token_ids`, `.finish_reason`, `.logprobs`, `.choices`).

    Example:
        >>> out = generate("smollm2-135m-instruct", "The capital of France is", temperature=0)
        >>> out.text, out.finish_reason
    """
    speculation = dict(speculative=speculative, draft_model=draft_model, num_draft=num_draft)
    if stream:
        deprecated("generate(..., stream=True)", "generate_stream(...)")
        return generate_stream(
            model,
            prompt,
            backend=backend,
            sampling_defaults=sampling_defaults,
            **speculation,
            **options,
        )
    lm, ids, p, spec = _prepare(model, prompt, backend, sampling_defaults, speculation, options)
    seqs: list[Sequence] = []
    for _ in _stream(lm, ids, p, seqs, spec):
        pass
    return Generation([seq.choice() for seq in seqs], ids)


def generate_stream(
    model: str | Path | LanguageModel,
    prompt: str | list[int],
    *,
    backend: str = "auto",
    sampling_defaults: str = "model",
    speculative: str | None = None,
    draft_model: str | Path | LanguageModel | None = None,
    num_draft: int | None = None,
    **options,
) -> Iterator[Chunk]:
    """Continue `prompt` as `generate` does, yielding Chunks (`.index`, `.text`, `.token_ids`,
    `.finish_reason`) as the tokens come. Bad options raise here, before the first chunk.

    Example:
        >>> for chunk in generate_stream("smollm2-135m-instruct", "Once upon a time"):
        ...     print(chunk.text, end="", flush=True)
    """
    speculation = dict(speculative=speculative, draft_model=draft_model, num_draft=num_draft)
    lm, ids, p, spec = _prepare(model, prompt, backend, sampling_defaults, speculation, options)
    return _stream(lm, ids, p, speculation=spec)


def _prepare(
    model, prompt, backend: str, sampling_defaults: str, speculation: dict, options: dict
) -> tuple[LanguageModel, list[int], SamplingParams, Speculation | None]:
    """The loaded model, the prompt's ids, the sampling and speculation settings: every check,
    done once."""
    from lmlab.models import load_lm

    p = SamplingParams.from_options(options)
    check_choice(sampling_defaults)
    lm = load_lm(model, backend=backend)
    p = p.with_defaults(choose_defaults(lm, sampling_defaults))
    spec = Speculation.create(lm, **speculation, backend=backend)
    if spec is not None and p.json_object:
        raise LmlabError(
            "json_object decoding does not combine with speculative decoding", param="speculative"
        )
    return lm, encode_prompt(lm, prompt), p, spec


def render(model: LanguageModel, messages: list[dict[str, str]]) -> list[int]:
    """Prompt ids for `messages`, ending where the assistant's answer begins."""
    text = model.tokenizer.render_chat(messages, add_generation_prompt=True)
    return model.tokenizer.encode(text)  # the template writes its own special tokens


def chat(
    model: str | Path | LanguageModel,
    messages: list[dict[str, str]],
    *,
    backend: str = "auto",
    sampling_defaults: str = "model",
    speculative: str | None = None,
    draft_model: str | Path | LanguageModel | None = None,
    num_draft: int | None = None,
    stream: bool = False,
    **options,
) -> Generation:
    """Answer the last message of a conversation, as the OpenAI chat API does.

    The whole history is passed each turn: `messages` is a list of
    `{"role": "system" | "user" | "assistant", "content": str}`.

    Args:
        model: a loaded LanguageModel, a bundled name or a path.
        messages: the conversation so far.
        sampling_defaults: what sampling options left out take, as for `generate`.
        speculative, draft_model, num_draft: speculative decoding, as for `generate`.
        stream: deprecated: use `chat_stream` (as `generate`'s `stream`).
        **options: sampling options, as for `generate`.

    Example:
        >>> reply = chat("smollm2-135m-instruct", [{"role": "user", "content": "Hi!"}])
        >>> reply.text
    """
    from lmlab.models import load_lm

    speculation = dict(speculative=speculative, draft_model=draft_model, num_draft=num_draft)
    if stream:
        deprecated("chat(..., stream=True)", "chat_stream(...)")
        return chat_stream(
            model,
            messages,
            backend=backend,
            sampling_defaults=sampling_defaults,
            **speculation,
            **options,
        )
    lm = load_lm(model, backend=backend)
    return generate(
        lm,
        render(lm, messages),
        backend=backend,
        sampling_defaults=sampling_defaults,
        **speculation,
        **options,
    )


def chat_stream(
    model: str | Path | LanguageModel,
    messages: list[dict[str, str]],
    *,
    backend: str = "auto",
    sampling_defaults: str = "model",
    speculative: str | None = None,
    draft_model: str | Path | LanguageModel | None = None,
    num_draft: int | None = None,
    **options,
) -> Iterator[Chunk]:
    """Answer the last message of a conversation as `chat` does, yielding Chunks as they come.

    Example:
        >>> for chunk in chat_stream("smollm2-135m-instruct", [{"role": "user", "content": "Hi"}]):
        ...     print(chunk.text, end="", flush=True)
    """
    from lmlab.models import load_lm

    lm = load_lm(model, backend=backend)
    return generate_stream(
        lm,
        render(lm, messages),
        backend=backend,
        sampling_defaults=sampling_defaults,
        speculative=speculative,
        draft_model=draft_model,
        num_draft=num_draft,
        **options,
    )
