"""The options of a translation search that the command line checks before loading torch:
the beam width, GNMT's length penalty, and the length bound relative to the source."""

from __future__ import annotations

from dataclasses import dataclass

from lmlab.errors import LmlabError

DEFAULT_ALPHA = 0.6


def length_penalty(n: int, alpha: float) -> float:
    """GNMT's lp(n) = ((5 + n) / 6) ** alpha for a target of n tokens."""
    return ((5 + n) / 6) ** alpha


def check_beam(beam: int) -> None:
    """A one-line error for a beam width below 1."""
    if beam < 1:
        raise LmlabError(f"--beam must be at least 1 (1 is greedy decoding), got {beam}",
                         param="beam")  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """How long a translation may be: `a * source tokens + b`, capped by `max_tokens`."""

    a: float = 2.0
    b: int = 10
    max_tokens: int | None = None  # an absolute cap (None: only the relative bound)

    def __post_init__(self) -> None:
        if self.a < 0 or self.b < 0 or self.a == self.b == 0:
            raise LmlabError("the length bound a x source + b needs a, b >= 0, not both 0")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise LmlabError("--max-tokens must be at least 1", param="max_tokens")

    def of(self, source_tokens: int, positions: int | None) -> int:
        """The most target tokens for a source of `source_tokens` tokens (at least 1)."""
        n = int(self.a * source_tokens + self.b)
        if self.max_tokens is not None:
            n = min(n, self.max_tokens)
        if positions is not None:
            n = min(n, positions - 1)  # within the decoder's positions
        return max(n, 1)
