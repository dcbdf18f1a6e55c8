"""Classification metrics against scikit-learn's, and against a hand-computed example."""

import numpy as np
import pytest
from sklearn import metrics as sk

from lmlab.classify.metrics import accuracy, classification_report, confusion_matrix, macro_f1

CLASSES = ["a", "b", "c", "d"]


def test_hand_computed_example():
    # truth a a b b, predicted a b b b: class a has precision 1/1, recall 1/2; b 2/3 and 2/2.
    r = classification_report(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert r.accuracy == 0.75
    assert (r.per_class[0].precision, r.per_class[0].recall) == (1.0, 0.5)
    assert r.per_class[1].precision == pytest.approx(2 / 3) and r.per_class[1].recall == 1.0
    assert r.per_class[0].f1 == pytest.approx(2 / 3) and r.per_class[1].f1 == pytest.approx(0.8)
    assert r.macro_f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert r.confusion == [[1, 1], [0, 2]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.choice(CLASSES, 200).tolist()
    # "d" is never predicted: its precision divides by zero (0 in both libraries).
    y_pred = rng.choice(CLASSES[:3], 200).tolist()
    r = classification_report(y_true, y_pred, CLASSES)
    p, rec, f, s = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=CLASSES, zero_division=0
    )
    assert [c.precision for c in r.per_class] == pytest.approx(p)
    assert [c.recall for c in r.per_class] == pytest.approx(rec)
    assert [c.f1 for c in r.per_class] == pytest.approx(f)
    assert [c.support for c in r.per_class] == s.tolist()
    assert r.accuracy == pytest.approx(sk.accuracy_score(y_true, y_pred))
    expected_f1 = sk.f1_score(y_true, y_pred, labels=CLASSES, average="macro", zero_division=0)
    assert r.macro_f1 == pytest.approx(expected_f1)
    assert macro_f1(y_true, y_pred, CLASSES) == pytest.approx(expected_f1)
    assert accuracy(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert np.array_equal(
        confusion_matrix(y_true, y_pred, CLASSES),
        sk.confusion_matrix(y_true, y_pred, labels=CLASSES),
    )


def test_confusion_png_and_text(tmp_path):
    r = classification_report(["x", "y", "y"], ["x", "x", "y"], ["x", "y"])
    path = r.plot_confusion(tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert "accuracy 0.6667" in str(r) and "macro-F1" in str(r)
    assert r.to_dict()["confusion"] == [[1, 0], [1, 1]]
