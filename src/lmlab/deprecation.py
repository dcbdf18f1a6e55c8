"""Old public names that keep working for one release, with a DeprecationWarning.

One decorator for renamed keyword arguments, and one function for every other deprecation, so
each warning says the same thing the same way: what to use instead, and when the old name goes.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

REMOVED_IN = "0.3"  # the release after the next: old names keep working in 0.2


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that `old` is deprecated in favour of `new` (shown at the caller's line)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in lmlab {REMOVED_IN}: use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Accept the old keyword names of a function (old="new"), warning once per call.

    Example:
        >>> @renamed_kwargs(encoder="model")
        ... def index(*, model=None): ...
        >>> index(encoder="x")   # DeprecationWarning: encoder= ... use model=
    """

    def decorate(fn: F) -> F:
        name = fn.__qualname__.removesuffix(".__init__")  # VectorIndex(encoder=...)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old}= and {new}=")
                deprecated(f"{name}({old}=...)", f"{new}=")
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
