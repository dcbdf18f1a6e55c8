"""Sampling parameters and the logit transforms, as plain functions on (B, V) tensors.

Order, as in Hugging Face `generate` and vLLM: penalties, then temperature, top-k, top-p, min-p,
then a draw. Temperature 0 (or top-k 1) is greedy: argmax, no randomness.

A sampling field left out (None) takes the model's default (see `lmlab.sampling_defaults`):
`SamplingParams.with_defaults` fills it in before decoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace

import torch

from lmlab.errors import LmlabError
from lmlab.sampling_defaults import FIELDS, SamplingDefaults


@dataclass
class SamplingParams:
    """How to pick each next token, and when to stop.

    Args:
        max_tokens: most new tokens per sample (also bounded by the context window).
        temperature: divides the logits; 0 means greedy.
        top_k: keep the k most likely tokens (0 keeps all).
        top_p: keep the smallest set of tokens whose probability sums to at least top_p.
        min_p: drop tokens less likely than min_p times the most likely one.
        repetition_penalty: CTRL/HF penalty (>1 discourages) on tokens of prompt and output.
            These five are None when not given: they then take the model's defaults
            (`with_defaults`; `lmlab.sampling_defaults`).
        presence_penalty: OpenAI's: subtract this from tokens already in the output.
        frequency_penalty: OpenAI's: subtract this times the count of each token in the output.
        stop: strings that end a sample (not included in its text).
        stop_token_ids: ids that end a sample, besides the model's end-of-text tokens.
        ignore_eos: keep going past end-of-text tokens (benchmarks).
        seed: same seed, same samples.
        n: samples per prompt.
        logprobs: report each chosen token's log-probability under the model.
        top_logprobs: and the k most likely alternatives at each step.
        json_object: constrain the output to one valid JSON object (see `lmlab.json_mode`).
    """

    max_tokens: int = 256
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    seed: int | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    json_object: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = [s for s in self.stop if s]
        checks = [
            ("max_tokens", self.max_tokens >= 1, "must be at least 1"),
            (
                "temperature",
                self.temperature is None or self.temperature >= 0,
                "must be >= 0 (0 means greedy)",
            ),
            ("top_k", self.top_k is None or self.top_k >= 0, "must be >= 0 (0 keeps all tokens)"),
            ("top_p", self.top_p is None or 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("min_p", self.min_p is None or 0 <= self.min_p <= 1, "must be in [0, 1]"),
            (
                "repetition_penalty",
                self.repetition_penalty is None or self.repetition_penalty > 0,
                "must be > 0 (1 means none)",
            ),
            ("presence_penalty", -2 <= self.presence_penalty <= 2, "must be in [-2, 2]"),
            ("frequency_penalty", -2 <= self.frequency_penalty <= 2, "must be in [-2, 2]"),
            ("n", self.n >= 1, "must be at least 1"),
            ("top_logprobs", 0 <= self.top_logprobs <= 20, "must be in [0, 20]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise LmlabError(f"{name} {rule}, got {getattr(self, name)}", param=name)
        if self.top_logprobs:
            self.logprobs = True

    @classmethod
    def from_options(cls, options: dict) -> SamplingParams:
        """Build from keyword options; an unknown option is a one-line error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise LmlabError(
                f"unknown option {unknown[0]!r}; options are: {', '.join(sorted(known))}",
                param=unknown[0],
            )
        return cls(**{k: v for k, v in options.items() if v is not None})

    @property
    def resolved(self) -> bool:
        """Whether every sampling field has a value (given, or filled by `with_defaults`)."""
        return all(getattr(self, name) is not None for name in FIELDS)

    def with_defaults(self, defaults: SamplingDefaults) -> SamplingParams:
        """A copy whose sampling fields left out (None) take `defaults`' values, given ones
        staying as they are, field by field (as vLLM applies a model's generation_config and
        llama.cpp its defaults): `temperature=1` alone keeps the model's recommended top-p.
        """
        missing = {n: getattr(defaults, n) for n in FIELDS if getattr(self, n) is None}
        return replace(self, **missing) if missing else self

    @property
    def greedy(self) -> bool:
        # below 1e-5 a temperature only overflows the logits; it means greedy (as in vLLM)
        return self.temperature < 1e-5 or self.top_k == 1

    @property
    def penalized(self) -> bool:
        return (
            self.repetition_penalty != 1
            or self.presence_penalty != 0
            or self.frequency_penalty != 0
        )


def apply_penalties(
    logits: torch.Tensor, seen: torch.Tensor, counts: torch.Tensor, p: SamplingParams
) -> torch.Tensor:
    """Penalise repeats. `seen` (B, V) bool: in prompt or output; `counts` (B, V): in output."""
    if p.repetition_penalty != 1:
        penalized = torch.where(
            logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty
        )
        logits = torch.where(seen, penalized, logits)
    if p.frequency_penalty or p.presence_penalty:
        logits = logits - p.frequency_penalty * counts - p.presence_penalty * (counts > 0)
    return logits


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties with the k-th kept), -inf elsewhere."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the nucleus: the fewest most-likely tokens whose probabilities reach top_p (and any
    token tied with the last of them).

    Only the largest probabilities are ranked, 64 first and 8x more while some row's nucleus is
    larger: on a 49k vocabulary a full sort costs 3.5 ms per token, the top 64 0.1 ms.
    """
    if top_p >= 1:
        return logits
    probs = logits.softmax(dim=-1)
    vocab = probs.shape[-1]
    k = min(64, vocab)
    while True:
        top = probs.topk(k, dim=-1).values  # (B, k), largest first
        if k == vocab or bool((top.sum(dim=-1) >= top_p).all()):
            break
        k = min(8 * k, vocab)
    before = top.cumsum(dim=-1) - top  # mass of the tokens ranked above each one
    size = (before < top_p).sum(dim=-1, keepdim=True).clamp(min=1)  # the most likely stays
    smallest = top.gather(-1, size - 1)
    return logits.masked_fill(probs < smallest, float("-inf"))


def filter_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below min_p times the row's largest probability."""
    if min_p <= 0:
        return logits
    probs = logits.softmax(dim=-1)
    drop = probs < min_p * probs.max(dim=-1, keepdim=True).values
    return logits.masked_fill(drop, float("-inf"))


def choose(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator) -> torch.Tensor:
    """Pick one token id per row of (B, V) logits (already penalised)."""
    if p.greedy:
        return _finite(logits).argmax(dim=-1)
    return draw(probabilities(logits, p), generator)


def probabilities(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    """The (B, V) distribution a sampled (not greedy) step draws from: temperature, top-k,
    top-p and min-p applied to the (already penalised) logits."""
    logits = _finite(logits) / p.temperature
    logits = filter_min_p(filter_top_p(filter_top_k(logits, p.top_k), p.top_p), p.min_p)
    return _finite(logits).softmax(dim=-1)


def _finite(logits: torch.Tensor) -> torch.Tensor:
    # extreme penalties can overflow: +inf is "certain", NaN is "impossible"
    return torch.nan_to_num(logits, nan=float("-inf"), posinf=torch.finfo(logits.dtype).max)


def verify_draft(
    logits: torch.Tensor,
    p: SamplingParams,
    draft: int,
    q: torch.Tensor | None,
    generator: torch.Generator,
) -> int:
    """The token at a step where a draft proposed `draft`, drawn from the same distribution
    as `choose` would draw it (speculative sampling: Leviathan et al. 2023, Chen et al. 2023).

    `logits` (V,) are the model's (already penalised), `q` (V,) the distribution the draft was
    drawn from (None: a point mass on `draft`, as prompt lookup proposes). The draft is kept
    with probability min(1, p(draft) / q(draft)); otherwise a token is drawn from max(0, p - q),
    renormalised: with a point mass, from p without the draft. Greedy decoding keeps the draft
    exactly when it is the argmax, and otherwise takes the argmax: what `choose` picks.
    """
    if p.greedy:
        return int(choose(logits[None], p, generator)[0])
    probs = probabilities(logits[None], p)[0]
    q_draft = 1.0 if q is None else float(q[draft])
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    if u * q_draft < float(probs[draft]):  # u < p/q without dividing by a zero q
        return draft
    if q is None:
        residual = probs.clone()
        residual[draft] = 0.0
    else:
        residual = (probs - q).clamp_(min=0.0)
    if not float(residual.sum()) > 0:  # p == q up to rounding: nothing left to correct
        residual = probs
    return int(draw(residual[None], generator)[0])


def draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of (B, V) probabilities, by inverting the cumulative distribution.

    The first token whose cumulative probability exceeds a uniform u * total is chosen, so each
    token is drawn with its probability and a zero-probability one never. This is about 20x
    cheaper than `torch.multinomial` on a 49k vocabulary (one cumulative sum, one binary search
    per row), which matters when the server samples for every token of every stream.
    """
    cdf = probs.double().cumsum(dim=-1)  # float64: the sum of 49k small terms stays exact enough
    total = cdf[:, -1:]  # (B, 1) ~1; NaN if a row had nothing finite left
    u = torch.rand(total.shape, generator=generator, dtype=torch.float64) * total
    ids = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    bad = ~(total.squeeze(-1) > 0) | (ids >= probs.shape[-1])
    if bad.any():  # a row with nothing finite left: take its most likely token
        ids = torch.where(bad, probs.nan_to_num(nan=-1.0).argmax(dim=-1), ids)
    return ids


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run torch's CPU operations on the calling thread alone while inside.

    Choosing a token is a few passes over one vocabulary row. Split over OpenMP threads they
    gain microseconds on an idle CPU, and cost milliseconds on a busy one (a server's, or a
    laptop's): every pass waits until the second thread gets a core. Measured on 2 busy cores,
    one pass over a 49k row: 14.6 ms with 2 threads, 0.03 ms with 1.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
