"""Scoring and generating over a table of texts, one result per row.

Shared by `lmlab score FILE --per-line`, `lmlab generate --file` and their `--ray` forms
(lmlab.ray), so a row gets the same numbers and the same greedy text on one process or on a
cluster.
"""

from __future__ import annotations

import math
from typing import Any

from lmlab.evaluate import token_logprobs
from lmlab.lm.base import LanguageModel

SCORE_COLUMNS = ("tokens", "logprob", "perplexity")
GENERATE_COLUMNS = ("completion", "finish_reason")


def score_texts(
    lm: LanguageModel, texts: list[str], *, window: int | None = 1024, stride: int | None = 512
) -> dict[str, list]:
    """Per text: tokens scored, total log-probability (nats) and perplexity, as `lmlab score`
    computes them for one text; a text under two tokens has no score (0 tokens, NaN)."""
    out: dict[str, list] = {c: [] for c in SCORE_COLUMNS}
    for text in texts:
        ids = lm.tokenizer.encode(text, add_special_tokens=True)
        logprobs = token_logprobs(lm, ids, window=window, stride=stride) if len(ids) > 1 else []
        total = float(sum(logprobs))
        out["tokens"].append(len(logprobs))
        out["logprob"].append(total)
        out["perplexity"].append(math.exp(-total / len(logprobs)) if logprobs else math.nan)
    return out


def generate_texts(
    lm: LanguageModel, prompts: list[str], *, sampling_defaults: str = "model", **options: Any
) -> dict[str, list]:
    """Per prompt: the generated continuation and why it stopped (`lmlab.generate` options)."""
    from lmlab.decode import generate

    out: dict[str, list] = {c: [] for c in GENERATE_COLUMNS}
    for prompt in prompts:
        result = generate(lm, prompt, sampling_defaults=sampling_defaults, **options)
        out["completion"].append(result.text)
        out["finish_reason"].append(result.finish_reason)
    return out
