"""What scoring and evaluation return: plain result types, importable from anywhere.

A leaf module (it imports nothing of lmlab), so a model that evaluates itself (the n-gram LM's
SRILM-style `evaluate_file`) returns an Evaluation without importing lmlab.evaluate, which loads
models by name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lmlab.reprs import brief_repr

LN2 = math.log(2)


@dataclass(repr=False)
class Score:
    """Per-token log-probabilities of a text and the totals derived from them (its repr shows
    the totals; the per-token lists are attributes)."""

    token_ids: list[int]  # the scored tokens (all but the first)
    tokens: list[str]
    logprobs: list[float]  # natural log of each token's probability given its prefix

    @property
    def total_logprob(self) -> float:
        return float(sum(self.logprobs))

    @property
    def n_tokens(self) -> int:
        return len(self.logprobs)

    @property
    def surprisal_nats(self) -> list[float]:
        return [-lp for lp in self.logprobs]

    @property
    def surprisal_bits(self) -> list[float]:
        return [-lp / LN2 for lp in self.logprobs]

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood per token, in nats."""
        return -self.total_logprob / self.n_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def bits_per_token(self) -> float:
        return self.nll / LN2

    def __repr__(self) -> str:
        if not self.logprobs:
            return brief_repr(self, tokens=0)
        return brief_repr(
            self,
            tokens=self.n_tokens,
            total_logprob=self.total_logprob,
            perplexity=self.perplexity,
        )

    def to_dict(self, per_token: bool = True) -> dict:
        out = {
            "total_logprob": self.total_logprob,
            "tokens": self.n_tokens,
            "nll": self.nll,
            "bits_per_token": self.bits_per_token,
            "perplexity": self.perplexity,
        }
        if per_token:
            out["per_token"] = [
                {
                    "token": t,
                    "id": i,
                    "logprob": lp,
                    "surprisal_nats": -lp,
                    "surprisal_bits": -lp / LN2,
                }
                for t, i, lp in zip(self.tokens, self.token_ids, self.logprobs, strict=True)
            ]
        return out


@dataclass(repr=False)
class Evaluation:
    """Perplexity of a text file and the counts behind it (what `lmlab eval` prints).

    `sentences`, `oov` and `words` mean something only for models that read words: n-gram
    models, and runs with a word-level vocabulary (whose unknown words are read as <unk>);
    for character, subword and pretrained models they are None.
    """

    perplexity: float
    loss: float  # mean negative log-likelihood, nats per scored token
    tokens: int  # tokens scored
    sentences: int | None  # non-empty lines (word-level models)
    # words outside the vocabulary: left out of the score (n-gram models) or scored as <unk>
    # (word-level runs of lmlab train)
    oov: int | None
    words: int | None  # whitespace-separated words in the file (word-level models)
    # "srilm": per sentence, </s> counted, OOV excluded; "window": see score; runs of lmlab
    # train: "windows of N" (non-overlapping, as the trainer validates) or "stream" (RNNs)
    convention: str

    @property
    def oov_rate(self) -> float | None:
        if self.oov is None:
            return None
        return self.oov / self.words if self.words else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "oov_rate": self.oov_rate}

    def __repr__(self) -> str:
        return brief_repr(self, **asdict(self))
