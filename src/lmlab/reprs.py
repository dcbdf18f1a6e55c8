"""Short reprs for results that hold long arrays (a Score of 80,000 tokens, a Clustering's
centres): the numbers a reader wants, the arrays still there as attributes.
"""

from __future__ import annotations

from typing import Any

TEXT_CHARS = 40  # a longer string is cut, with an ellipsis


def brief_repr(obj: object, **fields: Any) -> str:
    """`Name(a=1, b=-3.2105, text='Once upon…')`: floats to 6 significant digits, long
    strings cut, None fields left out (they do not apply to this result).

    Example:
        >>> brief_repr(score, tokens=82430, perplexity=141.18602)
        'Score(tokens=82430, perplexity=141.186)'
    """
    parts = [f"{name}={_value(v)}" for name, v in fields.items() if v is not None]
    return f"{type(obj).__name__}({', '.join(parts)})"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str) and len(v) > TEXT_CHARS:
        return repr(v[: TEXT_CHARS - 1] + "…")
    return repr(v)
