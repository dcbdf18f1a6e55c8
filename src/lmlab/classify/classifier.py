"""TextClassifier: one scikit-learn-style estimator over every classification method.

What is the same for all methods lives here: labels (any values, kept as strings; `classes_`
sorted, numerically when they are numbers, so 1-5 stars stay in order), the input checks,
`predict` as the most probable class, scores and reports, and the saved folder:

    FOLDER/lmlab.json   {"kind": "classifier", "format": 1, "method", "options", "classes",
                         "info", "lmlab_version"}
    FOLDER/...          the method's own files (a probe's head, a fine-tuned encoder, ...)

The method (lmlab.classify.method.METHODS) only maps texts to probabilities.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from lmlab.classify.data import label_text
from lmlab.classify.method import method_class
from lmlab.classify.metrics import Report, classification_report
from lmlab.errors import LmlabError
from lmlab.home import atomic_dir
from lmlab.runs import RUN_FILE

KIND = "classifier"
FORMAT = 1


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Texts -> labels, by any registered method, with scikit-learn's conventions.

    Args:
        method: logit (the default), lasso, mlp, or any other name in METHODS.
        **options: the method's options (JSON values), e.g. encoder="tfidf", C=0.5 for
            logit; an option the method does not take is an error that lists the ones it does.

    Example:
        >>> clf = TextClassifier("logit").fit(["great film", "awful film"], ["pos", "neg"])
        >>> clf.predict(["a great story"])
        array(['pos'], dtype=object)
        >>> clf.save("my-classifier")
        >>> TextClassifier.load("my-classifier").predict_proba(["awful"])
    """

    def __init__(self, method: str = "logit", **options: Any) -> None:
        self.method = method
        self.options = options
        check_options(method, options)

    # scikit-learn's get_params reads the __init__ signature, which **options hides.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"method": self.method, **self.options}

    def set_params(self, **params: Any) -> TextClassifier:
        method = params.pop("method", self.method)
        options = {**self.options, **params}
        check_options(method, options)
        self.method, self.options = method, options
        return self

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence,
        *,
        progress: bool = True,
        workdir: str | Path | None = None,
        resume: bool = False,
    ) -> TextClassifier:
        """Learn from texts and their labels (two or more distinct values); returns self.

        The methods trained by gradient steps (finetune, lora, mlp) keep their checkpoint/,
        metrics.jsonl and loss.png in `workdir` when given (else a temporary folder, removed
        after); `resume` continues an interrupted fit from there, exactly.
        """
        texts = _texts(texts)
        labels = [label_text(v) if v is not None else None for v in labels]
        if len(labels) != len(texts):
            raise LmlabError(f"{len(texts)} texts but {len(labels)} labels", param="labels")
        missing = [i for i, v in enumerate(labels) if v in (None, "")]
        if missing:
            raise LmlabError(
                f"{len(missing)} labels are missing (first at position {missing[0]})",
                param="labels",
            )
        classes = sort_labels(set(labels))
        if len(classes) < 2:
            only = f" ({classes[0]!r})" if classes else ""
            raise LmlabError(
                f"the training data has one class only{only}; a classifier needs two or more",
                param="labels",
            )
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
        method = method_class(self.method)(**self.options)
        loop = {"workdir": workdir, "resume": resume} if workdir is not None or resume else {}
        if loop and "workdir" not in inspect.signature(method.fit).parameters:
            raise LmlabError(
                f"the {self.method} method does not train in steps: workdir and resume apply "
                "to finetune, lora and mlp",
                param="workdir",
            )
        start = time.perf_counter()
        method.fit(texts, y, classes, progress=progress, **loop)
        self.fit_seconds_ = time.perf_counter() - start
        self.method_, self.classes_ = method, np.array(classes, dtype=object)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """float array (n, len(classes_)): each text's probability of each class."""
        self._check_fitted()
        texts = _texts(texts)
        if not texts:
            return np.zeros((0, len(self.classes_)))
        return self.method_.predict_proba(texts)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """The most probable class of each text (an object array of strings)."""
        proba = self.predict_proba(texts)
        return self.classes_[proba.argmax(axis=1)] if len(proba) else self.classes_[:0]

    def score(self, texts: Sequence[str], labels: Sequence, sample_weight=None) -> float:
        """Accuracy; labels compare as strings, as they were fitted (1 and "1" are one class)."""
        truth = np.array([label_text(v) for v in labels], dtype=object)
        return float(np.average(self.predict(texts) == truth, weights=sample_weight))

    def evaluate(self, texts: Sequence[str], labels: Sequence) -> Report:
        """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix.

        Labels the classifier was not trained on are an error (it could never predict them).
        """
        self._check_fitted()
        truth = [label_text(v) for v in labels]
        if len(truth) != len(texts):
            raise LmlabError(f"{len(texts)} texts but {len(truth)} labels", param="labels")
        known = set(self.classes_)
        unseen = sort_labels({v for v in truth if v not in known})
        if unseen:
            raise LmlabError(
                f"labels not seen in training: {', '.join(map(repr, unseen[:5]))} "
                f"(the classifier knows {', '.join(map(repr, self.classes_))})",
                param="labels",
            )
        report = classification_report(truth, list(self.predict(texts)), list(self.classes_))
        report.info = dict(self.method_.info)
        return report

    def save(self, folder: str | Path) -> Path:
        """Write the classifier to `folder` atomically; read it back with `load`."""
        self._check_fitted()
        folder = Path(folder)
        meta = {
            "kind": KIND,
            "format": FORMAT,
            "method": self.method,
            "options": self.method_.options,
            "classes": list(self.classes_),
            "info": self.method_.info,
            "lmlab_version": _version(),
        }
        with atomic_dir(folder, replaces=RUN_FILE) as tmp:
            self.method_.save(tmp)
            (tmp / RUN_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: str | Path, **overrides: Any) -> TextClassifier:
        """A classifier saved by `save`. `overrides` replace saved options (e.g. encoder=PATH
        when the encoder moved); an encoder that does not fit the saved head is an error."""
        folder = Path(folder)
        meta = read_meta(folder)
        options = {**meta.get("options", {}), **overrides}
        method_cls = method_class(meta["method"])
        clf = cls(meta["method"], **options)
        clf.method_ = method_cls.load(folder, options, list(meta["classes"]))
        clf.classes_ = np.array(meta["classes"], dtype=object)
        return clf

    def _check_fitted(self) -> None:
        if not hasattr(self, "method_"):
            raise LmlabError("this classifier is not fitted yet; call fit(texts, labels) first")

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"TextClassifier({self.method!r}{options})"


def read_meta(folder: Path) -> dict[str, Any]:
    """The lmlab.json of a saved classifier, or a one-line error saying what the folder is."""
    try:
        meta = json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        raise LmlabError(
            f"{folder} is not a saved classifier (no readable lmlab.json); "
            "make one with `lmlab classify fit`",
            param="folder",
        ) from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        kind = meta.get("kind") if isinstance(meta, dict) else None
        raise LmlabError(f"{folder} holds a {kind!r} model, not a classifier", param="folder")
    return meta


def method_options(method: str) -> list[str] | None:
    """The option names a method takes: its constructor's keywords, or the keys of its
    `defaults` when it takes **options (None: it takes any keyword)."""
    cls = method_class(method)
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        defaults = getattr(cls, "defaults", None)
        return list(defaults) if defaults is not None else None
    return [n for n in params if n != "self"]


def check_options(method: str, options: dict[str, Any]) -> None:
    """An option the method's constructor does not take is an error listing those it does."""
    accepted = method_options(method)
    wrong = [k for k in options if accepted is not None and k not in accepted]
    if wrong:
        raise LmlabError(
            f"method {method} does not take {', '.join(wrong)}; its options are "
            f"{', '.join(accepted) or 'none'}",
            param=wrong[0],
        )


def sort_labels(labels: set[str]) -> list[str]:
    """Labels in order: numerically when all are numbers ("2" before "10"), else as text."""
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise LmlabError("pass a list of texts, not one string", param="texts")
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise LmlabError("texts must be strings", param="texts")
    return texts


def _version() -> str:
    from lmlab import __version__

    return __version__
