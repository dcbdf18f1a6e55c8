"""Classification metrics: accuracy, per-class precision/recall/F1, macro-F1, confusion matrix.

For class c, with the confusion matrix M (rows: true class, columns: predicted class):
  precision_c = M[c, c] / sum_r M[r, c]   (of the texts called c, the share that are c)
  recall_c    = M[c, c] / sum_k M[c, k]   (of the texts that are c, the share called c)
  F1_c        = 2 precision_c recall_c / (precision_c + recall_c)
  macro-F1    = the plain mean of F1_c over the classes, so rare classes count as much as
                common ones (accuracy does not).
A ratio with a zero denominator is 0, as in scikit-learn (zero_division=0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def confusion_matrix(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> np.ndarray:
    """int array (K, K): entry [i, j] counts texts of class i predicted as class j."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


@dataclass
class ClassScores:
    """Precision, recall, F1 and support (number of true texts) of one class."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(repr=False)
class Report:
    """What `TextClassifier.evaluate` returns; `to_dict()` is the JSON of `lmlab classify eval`,
    `print(report)` the table of per-class scores and the confusion matrix; its repr is the
    headline numbers."""

    accuracy: float
    macro_f1: float
    per_class: list[ClassScores]
    confusion: list[list[int]]  # rows: true class, columns: predicted, in `classes` order
    classes: list[str]
    n: int
    info: dict[str, Any] = field(default_factory=dict)  # the method's notes (e.g. unparseable)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plot_confusion(self, path: str | Path) -> Path:
        """Write the confusion matrix as a heat map (see `plot_confusion`)."""
        return plot_confusion(np.array(self.confusion), self.classes, path)

    def __repr__(self) -> str:
        from lmlab.reprs import brief_repr

        classes = self.classes if len(self.classes) <= 10 else len(self.classes)
        return brief_repr(
            self, accuracy=self.accuracy, macro_f1=self.macro_f1, n=self.n, classes=classes
        )

    def __str__(self) -> str:
        width = max(8, *(len(c) for c in self.classes))
        lines = [
            f"accuracy {self.accuracy:.4f}   macro-F1 {self.macro_f1:.4f}   ({self.n} texts)",
            "",
            f"{'class':<{width}}  precision  recall      F1  support",
        ]
        for s in self.per_class:
            lines.append(
                f"{s.label:<{width}}  {s.precision:>9.4f}  {s.recall:>6.4f}  {s.f1:>6.4f}"
                f"  {s.support:>7}"
            )
        lines += ["", "confusion (rows: true, columns: predicted)"]
        lines.append(" " * width + "".join(f"  {c[:8]:>8}" for c in self.classes))
        for c, row in zip(self.classes, self.confusion, strict=True):
            lines.append(f"{c:<{width}}" + "".join(f"  {v:>8}" for v in row))
        return "\n".join(lines)


def classification_report(y_true: Sequence, y_pred: Sequence, classes: Sequence[str]) -> Report:
    """All the metrics of predictions against the truth, over `classes` (in that order).

    Example:
        >>> r = classification_report(["a", "b", "b"], ["a", "b", "a"], ["a", "b"])
        >>> r.accuracy, r.per_class[0].precision
        (0.6666666666666666, 0.5)
    """
    m = confusion_matrix(y_true, y_pred, classes)
    tp = np.diag(m).astype(float)
    precision = _ratio(tp, m.sum(axis=0))
    recall = _ratio(tp, m.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    per_class = [
        ClassScores(str(c), float(p), float(r), float(f), int(s))
        for c, p, r, f, s in zip(classes, precision, recall, f1, m.sum(axis=1), strict=True)
    ]
    n = int(m.sum())
    return Report(
        accuracy=float(tp.sum() / n) if n else 0.0,
        macro_f1=float(f1.mean()) if len(f1) else 0.0,
        per_class=per_class,
        confusion=m.tolist(),
        classes=[str(c) for c in classes],
        n=n,
    )


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    """The share of predictions equal to the truth."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if len(y_true) else 0.0


def macro_f1(y_true: Sequence, y_pred: Sequence, classes: Sequence[str] | None = None) -> float:
    """The unweighted mean of the per-class F1 (classes: default, every label seen)."""
    classes = sorted(set(y_true) | set(y_pred)) if classes is None else classes
    return classification_report(y_true, y_pred, classes).macro_f1


def plot_confusion(matrix: np.ndarray, classes: Sequence[str], path: str | Path) -> Path:
    """A heat map of the confusion matrix, counts written in the cells, rows = true class;
    PNG, JPEG, PDF or SVG by `path`'s ending."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmlab.embed.maps import save_figure

    k = len(classes)
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * k, 2 + 0.7 * k))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(k), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            color = "white" if matrix[i, j] > threshold else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color)
    ax.set_title("confusion matrix")
    return save_figure(fig, path)
