"""Probes (logit, lasso, mlp) against scikit-learn, and TextClassifier's contract."""

import numpy as np
import pytest
from classify_data import corpus
from sklearn.linear_model import LogisticRegression

from lmlab.classify.classifier import TextClassifier, sort_labels
from lmlab.errors import LmlabError

TRAIN = corpus(300, seed=0)
TEST = corpus(90, seed=1)


def test_logit_without_penalty_equals_sklearn():
    clf = TextClassifier("logit", encoder="bow", penalty="none").fit(*TRAIN, progress=False)
    assert list(clf.classes_) == ["mid", "neg", "pos"]
    encoder = clf.method_._encoder
    X, y = encoder.encode(TRAIN[0]).astype(np.float64), TRAIN[1]
    reference = LogisticRegression(C=np.inf, solver="newton-cg", tol=1e-10, max_iter=10_000)
    reference.fit(X, y)
    assert list(reference.classes_) == list(clf.classes_)
    ours = clf.predict_proba(TEST[0])
    theirs = reference.predict_proba(encoder.encode(TEST[0]).astype(np.float64))
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.allclose(ours.sum(axis=1), 1)


def test_binary_logit_equals_sklearn():
    texts, labels = TRAIN
    keep = [i for i, v in enumerate(labels) if v != "mid"]
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    clf = TextClassifier("logit", encoder="bow", C=0.5).fit(texts, labels, progress=False)
    X = clf.method_._encoder.encode(texts).astype(np.float64)
    reference = LogisticRegression(C=0.5, solver="newton-cg", tol=1e-10).fit(X, labels)
    assert np.abs(clf.predict_proba(texts) - reference.predict_proba(X)).max() < 1e-4


def test_l1_gets_sparser_as_C_falls():
    counts = []
    for C in (10.0, 1.0, 0.1):
        clf = TextClassifier("lasso", encoder="bow", C=C).fit(*TRAIN, progress=False)
        info = clf.method_.info
        W = clf.method_.W_
        assert info["nonzero_weights"] == int((W != 0).sum())
        assert info["selected_count"] == int((np.abs(W).max(axis=0) > 0).sum())
        counts.append(info["nonzero_weights"])
    assert counts[0] >= counts[1] >= counts[2] and counts[2] < counts[0]
    # The words kept at small C are the ones that tell the classes apart.
    kept = {row["feature"] for row in info["selected_features"]}
    assert kept and kept <= {"good", "bad", "meh"}


def test_three_classes_are_learned():
    for method in ("logit", "mlp"):
        clf = TextClassifier(method, encoder="bow").fit(*TRAIN, progress=False)
        # A text full of one class's word is that class.
        assert list(clf.predict(["good good good", "bad bad bad", "meh meh meh"])) == [
            "pos",
            "neg",
            "mid",
        ]
        assert clf.score(*TEST) > 0.6  # three classes: chance is 1/3


def test_mlp_is_deterministic_and_stops_early():
    a = TextClassifier("mlp", encoder="bow", epochs=300, patience=3, seed=1).fit(
        *TRAIN, progress=False
    )
    b = TextClassifier("mlp", encoder="bow", epochs=300, patience=3, seed=1).fit(
        *TRAIN, progress=False
    )
    c = TextClassifier("mlp", encoder="bow", epochs=300, patience=3, seed=2).fit(
        *TRAIN, progress=False
    )
    assert np.array_equal(a.predict_proba(TEST[0]), b.predict_proba(TEST[0]))
    assert not np.array_equal(a.predict_proba(TEST[0]), c.predict_proba(TEST[0]))
    info = a.method_.info
    assert info["held_out"] == 30 and info["epochs_run"] < 300
    assert info["epochs_run"] - info["best_epoch"] == 3


@pytest.mark.parametrize(
    "method,options",
    [("logit", {"encoder": "bow"}), ("lasso", {"encoder": "tfidf"}), ("mlp", {"encoder": "bow"})],
)
def test_save_load_gives_identical_probabilities(tmp_path, method, options):
    clf = TextClassifier(method, **options).fit(*TRAIN, progress=False)
    clf.save(tmp_path / "clf")
    again = TextClassifier.load(tmp_path / "clf")
    assert again.method == method and list(again.classes_) == list(clf.classes_)
    assert np.array_equal(again.predict_proba(TEST[0]), clf.predict_proba(TEST[0]))
    assert (tmp_path / "clf" / "encoder" / "vocabulary.json").is_file()


@pytest.mark.slow
def test_minilm_probe_round_trip_and_mismatched_encoder(tmp_path):
    clf = TextClassifier("logit").fit(*corpus(30), progress=False)
    assert clf.method_.options["encoder"] == "all-minilm-l6-v2"
    clf.save(tmp_path / "clf")
    # Only the head is saved: a few KB, no encoder weights.
    assert sum(p.stat().st_size for p in (tmp_path / "clf").iterdir()) < 20_000
    again = TextClassifier.load(tmp_path / "clf")
    assert np.array_equal(again.predict_proba(TEST[0]), clf.predict_proba(TEST[0]))
    bow = TextClassifier("logit", encoder="bow").fit(*TRAIN, progress=False).method_._encoder
    bow.save(tmp_path / "bow")
    with pytest.raises(LmlabError, match=r"gives 8-d vectors.*fitted on 384-d"):
        TextClassifier.load(tmp_path / "clf", encoder=str(tmp_path / "bow"))


def test_mistakes_are_clear_errors():
    with pytest.raises(LmlabError, match="one class only"):
        TextClassifier("logit", encoder="bow").fit(["a", "b"], ["x", "x"])
    clf = TextClassifier("logit", encoder="bow").fit(*TRAIN, progress=False)
    with pytest.raises(LmlabError, match="labels not seen in training: 'other'"):
        clf.evaluate(["good", "bad"], ["pos", "other"])
    with pytest.raises(LmlabError, match="not fitted"):
        TextClassifier("logit").predict(["x"])
    with pytest.raises(LmlabError, match="does not take hidden; its options are encoder, penalty"):
        TextClassifier("logit", hidden=3)
    with pytest.raises(LmlabError, match="unknown method 'svm'"):
        TextClassifier("svm")
    with pytest.raises(LmlabError, match="penalty must be"):
        TextClassifier("logit", encoder="bow", penalty="l3").fit(*TRAIN)
    with pytest.raises(LmlabError, match="2 labels are missing"):
        TextClassifier("logit").fit(["a", "b", "c"], ["x", None, ""])
    for option, message in [
        ({"lr": -1}, r"lr must be positive, got -1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"patience": 0}, r"patience must be at least 1, got 0"),
    ]:
        with pytest.raises(LmlabError, match=message):
            TextClassifier("mlp", encoder="bow", **option).fit(*TRAIN, progress=False)


def test_labels_sort_numerically_and_report_keys():
    assert sort_labels({"10", "2", "1"}) == ["1", "2", "10"]
    # Integer labels are kept as strings, and score compares them as such.
    stars = [{"pos": 5, "neg": 1, "mid": 3}[v] for v in TRAIN[1]]
    clf = TextClassifier("logit", encoder="bow").fit(TRAIN[0], stars, progress=False)
    assert list(clf.classes_) == ["1", "3", "5"]
    assert clf.score(TRAIN[0], stars) == clf.evaluate(TRAIN[0], stars).accuracy > 0.6
    clf = TextClassifier("logit", encoder="bow").fit(*TRAIN, progress=False)
    assert set(clf.evaluate(*TEST).to_dict()) >= {"accuracy", "macro_f1", "per_class", "confusion"}
    assert clf.get_params()["encoder"] == "bow"


def test_a_classifier_folder_is_not_a_language_model(tmp_path):
    from lmlab.models import load_lm

    TextClassifier("logit", encoder="bow").fit(*TRAIN, progress=False).save(tmp_path / "clf")
    with pytest.raises(LmlabError, match="is a text classifier, not a language model"):
        load_lm(tmp_path / "clf")


def test_works_with_scikit_learn_tools():
    from sklearn.base import clone, is_classifier
    from sklearn.model_selection import cross_val_score

    clf = TextClassifier("logit", encoder="bow", C=2.0)
    assert is_classifier(clf) and clone(clf).get_params() == {
        "method": "logit",
        "encoder": "bow",
        "C": 2.0,
    }
    scores = cross_val_score(clf, *TRAIN, cv=3)
    assert len(scores) == 3 and all(s > 0.6 for s in scores)
