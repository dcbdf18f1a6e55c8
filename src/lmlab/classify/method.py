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

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write this method's own files (weights, head) into `folder`."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> Method:
        """The method saved in `folder` by `save`, with the options it was made with."""


def method_class(name: str) -> type[Method]:
    """The Method class registered as `name`; an error listing the known ones."""
    if name not in METHODS:
        raise LmlabError(
            f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))}", param="method"
        )
    module, cls = METHODS[name].split(":")
    return getattr(import_module(module), cls)
