"""Several methods fitted on the same training texts and scored on the same test texts."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from lmlab.classify.classifier import TextClassifier, method_options
from lmlab.classify.method import method_class


@dataclass
class Comparison:
    """One method's row of the table."""

    method: str
    accuracy: float
    macro_f1: float
    fit_seconds: float
    notes: str  # the method's scalar info, e.g. "unparseable 3" or "selected_count 41"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(
    train: tuple[list[str], list[str]],
    test: tuple[list[str], list[str]],
    methods: list[str],
    *,
    options: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[Comparison]:
    """Fit every method on `train`, evaluate it on `test`: one Comparison per method.

    Args:
        train: (texts, labels) to fit on.
        test: (texts, labels) to score on.
        methods: names from METHODS (an unknown name fails before any work).
        options: options passed to each method that takes them (e.g. encoder, seed), so a
            shared setting does not have to be given once per method.

    Example:
        >>> rows = compare((train_x, train_y), (test_x, test_y), ["logit", "lasso", "mlp"])
        >>> [(r.method, round(r.accuracy, 3)) for r in rows]
    """
    options = options or {}
    for name in methods:
        method_class(name)
    rows = []
    for name in methods:
        accepted = method_options(name)
        own = {k: v for k, v in options.items() if accepted is None or k in accepted}
        clf = TextClassifier(name, **own).fit(*train, progress=progress)
        report = clf.evaluate(*test)
        notes = "; ".join(
            f"{k} {v}" for k, v in report.info.items() if isinstance(v, bool | int | float | str)
        )
        rows.append(Comparison(name, report.accuracy, report.macro_f1, clf.fit_seconds_, notes))
    return rows


def subsample(
    texts: list[str], labels: list[str], limit: int | None, seed: int = 0
) -> tuple[list[str], list[str]]:
    """At most `limit` (text, label) pairs, drawn at random (by `seed`) in their file order."""
    if limit is None or limit >= len(texts):
        return texts, labels
    keep = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in keep], [labels[i] for i in keep]
