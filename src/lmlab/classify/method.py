"""The Method interface: one way of turning texts into class probabilities.

`TextClassifier` (classifier.py) does what is the same for every method: label encoding, input
checks, scoring, and the run folder (`lmlab.json` with the method name, its options and the
classes). A method only learns (or, for prompting methods, sets up) a map from texts to
probabilities over `classes`, and saves and loads its own files in that folder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.errors import LmlabError

# method name -> "module:Class"; every class implements Method.
METHODS: dict[str, str] = {
    "logit": "lmlab.classify.probes:Logit",
    "lasso": "lmlab.classify.probes:Lasso",
    "mlp": "lmlab.classify.probes:MLP",
    "finetune": "lmlab.classify.finetune:FineTune",
    "lora": "lmlab.classify.finetune:LoRA",
    "zero-shot": "lmlab.classify.prompting:ZeroShot",
    "few-shot": "lmlab.classify.prompting:FewShot",
}


class Method(ABC):
    """Texts -> probabilities over the classes it was fitted (or set up) with.

    Subclasses take their options as keyword arguments (all JSON-serializable, so the folder
    can record them) and set `options` to them.
    """

    name: str = "method"
    options: dict[str, Any]
    # What a report should show besides the scores, e.g. {"unparseable": 3} or the non-zero
    # features of a LASSO fit; filled by fit (and predict_proba, for prompting methods).
    info: dict[str, Any]

    @abstractmethod
    def fit(
        self, texts: list[str], y: np.ndarray, classes: list[str], *, progress: bool = True
    ) -> Method:
        """Learn from `texts` and their class indices `y` (ints into `classes`)."""

    @abstractmethod
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """float array (n, len(classes)), rows summing to 1."""

    def __repr__(self) -> str:
        """`FewShot(shots=4, seed=0, ...)`: the options, as the method was made."""
        options = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "options", {}).items())
        return f"{type(self).__name__}({options})"

    def predict(self, texts: list[str]) -> np.ndarray:
        """The most probable class of each text: an object array of labels from `classes_`
        (set by fit or load, as given there), as scikit-learn's `predict` returns labels."""
        classes = getattr(self, "classes_", None)
        if classes is None:
            raise LmlabError(f"this {self.name} method is not fitted yet: call fit first")
        labels = np.empty(len(classes), dtype=object)
        labels[:] = list(classes)
        proba = self.predict_proba(list(texts))
        return labels[proba.argmax(axis=1)] if len(proba) else labels[:0]

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write this method's own files (weights, head) into `folder`."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> Method:
        """The method saved in `folder` by `save`, with the options it was made with."""


def class_indices(y, classes: list) -> np.ndarray:
    """`y` as int indices into `classes` (what the methods learn from).

    `y` holds labels from `classes` (any values, "negative" or 3: scikit-learn's convention;
    1, 1.0 and "1" are one label) or, when `classes` are not integers, integer indices into
    them (what `TextClassifier` passes). Anything else is a one-line error.

    Example:
        >>> class_indices(["positive", "negative"], ["negative", "positive"])
        array([1, 0])
    """
    from lmlab.classify.data import label_text

    values = list(y)
    if not values:
        return np.zeros(0, dtype=np.int64)
    as_array = np.asarray(values)
    integer_classes = all(isinstance(c, int | np.integer) for c in classes)
    if as_array.dtype.kind in "iu" and not integer_classes:
        wrong = sorted({int(v) for v in as_array if not 0 <= v < len(classes)})
        if wrong:
            raise LmlabError(
                f"y holds class indices outside 0..{len(classes) - 1} ({wrong[0]}); pass "
                f"labels from classes ({', '.join(map(repr, classes[:5]))}) or their indices",
                param="y",
            )
        return as_array.astype(np.int64)
    index: dict[str, int] = {}
    for i, c in enumerate(classes):
        index.setdefault(label_text(c), i)
    found = [index.get(label_text(v)) for v in values]
    unknown = list(dict.fromkeys(v for v, i in zip(values, found, strict=True) if i is None))
    if unknown:
        raise LmlabError(
            f"labels not among the classes: {', '.join(map(repr, unknown[:5]))} "
            f"(classes: {', '.join(map(repr, classes[:10]))})",
            param="y",
        )
    return np.array(found, dtype=np.int64)


def check_classes(classes) -> list:
    """`classes` as a list of distinct labels (as given), else a one-line error. One class is
    allowed (a zero-shot pipeline scores a single candidate label); none is not."""
    from lmlab.classify.data import label_text

    if isinstance(classes, str):
        raise LmlabError("classes must be a list of labels, not one string", param="classes")
    given = list(classes)
    texts = [label_text(c) for c in given]
    if len(set(texts)) != len(texts):
        twice = sorted({t for t in texts if texts.count(t) > 1})
        raise LmlabError(f"classes repeat a label: {', '.join(twice)}", param="classes")
    if not given:
        raise LmlabError("classes is empty: give the labels to classify into", param="classes")
    return given


def method_class(name: str) -> type[Method]:
    """The Method class registered as `name`; an error listing the known ones."""
    if name not in METHODS:
        raise LmlabError(
            f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}", param="method"
        )
    module, cls = METHODS[name].split(":")
    return getattr(import_module(module), cls)
