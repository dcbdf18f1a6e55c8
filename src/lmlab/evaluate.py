"""Scoring text under a language model: log-probability, surprisal and perplexity.

Convention (as Hugging Face's perplexity guide and `model(ids, labels=ids).loss`): the text is
tokenized with the model's sequence-start tokens; every token after the first is scored given
all tokens before it. Perplexity = exp(mean negative log-likelihood in nats). Texts longer than
the window are scored with a sliding window: each window of `window` tokens scores only the
tokens the previous window did not, with up to `window - stride` tokens of context before them.
"""

from __future__ import annotations

from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel
from lmlab.results import Evaluation, Score

__all__ = ["Evaluation", "Score", "evaluate_file", "perplexity", "score", "token_logprobs"]


def token_logprobs(
    lm: LanguageModel, ids: list[int], *, window: int | None = None, stride: int | None = None
) -> list[float]:
    """log P(ids[i] | ids[:i]) for i >= 1, with a sliding window over long sequences."""
    import torch

    window = min(window or lm.context_length, lm.context_length)
    # Consecutive windows must overlap by a token (the first of a window has no prediction);
    # a model with a short context window shortens the stride too.
    stride = min(stride or window, window - 1)
    if window < 2 or not 1 <= stride <= window:
        raise LmlabError(f"need window >= 2 and 1 <= stride <= window (got {window}, {stride})")
    out: list[float] = []
    scored = 1  # ids[:scored] already have their log-probabilities (the first never does)
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        if end <= scored:
            continue
        chunk = torch.tensor([ids[begin:end]])
        state = lm.new_state(1)
        try:
            logits = lm.forward(state, chunk, all_positions=True)[0]  # (T, V)
        finally:
            lm.release(state)
        logp = logits[:-1].log_softmax(dim=-1)  # row t predicts chunk[t + 1]
        targets = chunk[0, 1:]
        picked = logp.gather(1, targets[:, None])[:, 0]
        out.extend(picked[scored - begin - 1 :].tolist())
        scored = end
        if end == len(ids):
            break
    return out


def score(
    model: str | Path | LanguageModel,
    text: str,
    *,
    window: int | None = 1024,
    stride: int | None = 512,
    backend: str = "auto",
) -> Score:
    """Log-probability, per-token surprisal and perplexity of `text` under a model.

    Texts longer than `window` tokens (capped at the context window) are scored with a sliding
    window that advances by `stride`.

    Example:
        >>> s = score("smollm2-135m-instruct", "The man bites the dog.")
        >>> s.perplexity, s.surprisal_bits[:3]
    """
    from lmlab.models import load_lm

    lm = load_lm(model, backend=backend)
    ids = lm.tokenizer.encode(text, add_special_tokens=True)
    if len(ids) < 2:
        raise LmlabError("the text needs at least two tokens to score (the first has no context)")
    logprobs = token_logprobs(lm, ids, window=window, stride=stride)
    scored = ids[1:]
    tokens = [lm.tokenizer.decode([i], skip_special_tokens=False) for i in scored]
    return Score(scored, tokens, logprobs)


def perplexity(
    model: str | Path | LanguageModel,
    text_or_path: str | Path,
    *,
    window: int | None = 1024,
    stride: int | None = 512,
    backend: str = "auto",
) -> Score:
    """Score a long text or a text file (`score` with a path accepted).

    Returns a Score; its `.perplexity` is the number usually reported.
    """
    path = Path(text_or_path)
    if isinstance(text_or_path, Path) or _looks_like_file(text_or_path):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise LmlabError(f"cannot read {path}: {e}") from None
    else:
        text = str(text_or_path)
    return score(model, text, window=window, stride=stride, backend=backend)


def _looks_like_file(text: str) -> bool:
    return "\n" not in text and len(text) < 4096 and names_a_file(text)


def names_a_file(text: str) -> bool:
    """Whether `text` is the path of an existing file (a text too long to be a file name, or
    with a NUL in it, is not: Path.is_file raises on those)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def evaluate_file(
    model: str | Path | LanguageModel,
    path: str | Path,
    *,
    window: int | None = 1024,
    stride: int | None = 512,
    backend: str = "auto",
) -> Evaluation:
    """Perplexity of a text file under a model, by the model's own convention.

    A model with its own `evaluate_file` uses it: n-gram models score the file sentence by
    sentence as SRILM's `ngram -ppl` does (every word and every `</s>` scored, `<s>` not, words
    outside the vocabulary left out and counted as OOV); models trained here score it as their
    trainer's validation does (non-overlapping windows of the training length, or one stream
    for recurrent models), so a run's valid.txt gives its final validation loss. Any other
    model scores the whole text with a sliding window (see `score`).

    Example:
        >>> ev = evaluate_file("runs/ptb5", "ptb.test.txt")
        >>> ev.perplexity, ev.tokens, ev.oov
    """
    from lmlab.models import load_lm

    lm = load_lm(model, backend=backend)
    if hasattr(lm, "evaluate_file"):
        return lm.evaluate_file(path)
    result = perplexity(lm, Path(path), window=window, stride=stride)
    return Evaluation(
        perplexity=result.perplexity,
        loss=result.nll,
        tokens=result.n_tokens,
        sentences=None,  # subword tokens: neither sentences nor unknown words mean anything
        oov=None,
        words=None,
        convention="window",
    )
