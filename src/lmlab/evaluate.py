"""Scoring text under a language model: log-probability, surprisal and perplexity.

Convention (as Hugging Face's perplexity guide and `model(ids, labels=ids).loss`): the text is
tokenized with the model's sequence-start tokens; every token after the first is scored given
all tokens before it. Perplexity = exp(mean negative log-likelihood in nats). Texts longer than
the window are scored with a sliding window: each window of `window` tokens scores only the
tokens the previous window did not, with up to `window - stride` tokens of context before them.
"""

from __future__ import annotations

from pathlib import Path

from lmlab.deprecation import deprecated
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
    text: str | Path,
    *,
    window: int | None = 1024,
    stride: int | None = 512,
    backend: str = "auto",
) -> Score:
    """Log-probability, per-token surprisal and perplexity of `text` under a model.

    `text` is the text itself, or a Path object naming a UTF-8 file to read (a str is always
    the text: `perplexity` is the function that also takes a file name as a str).
    Texts longer than `window` tokens (capped at the context window) are scored with a sliding
    window that advances by `stride`.

    Example:
        >>> s = score("smollm2-135m-instruct", "The man bites the dog.")
        >>> s.perplexity, s.surprisal_bits[:3]
    """
    from lmlab.models import load_lm

    if isinstance(text, Path):
        text = _read(text)
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
) -> float:
    """The perplexity of a text or a text file under a model: exp(mean negative log-likelihood
    per token), scored as `score` does (a str that names an existing file is read).

    Before lmlab 0.2 this returned the whole Score; the number it returns now still answers
    the Score's attributes (`.perplexity`, `.logprobs`, ...) for one release, with a
    DeprecationWarning: use `score` for them.

    Example:
        >>> perplexity("smollm2-135m-instruct", "The man bites the dog.")
    """
    if isinstance(text_or_path, str) and _looks_like_file(text_or_path):
        text_or_path = Path(text_or_path)
    result = score(model, text_or_path, window=window, stride=stride, backend=backend)
    return _Perplexity(result)


class _Perplexity(float):
    """A perplexity (a float) that still answers, with a DeprecationWarning, the attributes of
    the Score that `perplexity` returned before lmlab 0.2."""

    def __new__(cls, result: Score) -> _Perplexity:
        number = super().__new__(cls, result.perplexity)
        number._score = result
        return number

    def __getattr__(self, name: str):
        result = self.__dict__.get("_score")
        if name.startswith("_") or result is None or not hasattr(result, name):
            raise AttributeError(f"'float' object has no attribute {name!r}")
        deprecated(
            f"perplexity(...).{name}",
            f"score(model, text).{name} (perplexity() returns the perplexity, a float)",
        )
        return getattr(result, name)

    def __reduce__(self):  # pickles and copies as the plain number it is
        return (float, (float(self),))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LmlabError(f"cannot read {path}: {e}") from None


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
    result = score(lm, Path(path), window=window, stride=stride)
    return Evaluation(
        perplexity=result.perplexity,
        loss=result.nll,
        tokens=result.n_tokens,
        sentences=None,  # subword tokens: neither sentences nor unknown words mean anything
        oov=None,
        words=None,
        convention="window",
    )
