"""The default sentiment classifier shipped in the package (scripts/train_sentiment_model.py)."""

from pathlib import Path

import pytest

from lmlab.classify.classifier import TextClassifier
from lmlab.classify.data import read_labelled
from lmlab.classify.resources import default_sentiment_folder

SST2 = Path(__file__).parents[1] / ".." / "shared" / "data" / "sst2"


@pytest.fixture(scope="module")
def sentiment():
    return TextClassifier.load(default_sentiment_folder())


def test_is_a_small_head_on_the_bundled_encoder(sentiment):
    folder = default_sentiment_folder()
    assert sentiment.method == "logit" and list(sentiment.classes_) == ["NEGATIVE", "POSITIVE"]
    assert sentiment.method_.options["encoder"] == "all-minilm-l6-v2"
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 20_000


def test_the_lecture_examples(sentiment):
    texts = ["Transformers library is great.", "Transformers library is awful."]
    assert list(sentiment.predict(texts)) == ["POSITIVE", "NEGATIVE"]
    proba = sentiment.predict_proba(texts)
    assert proba[0, 1] > 0.75 and proba[1, 0] > 0.75  # clearly, not a coin flip


@pytest.mark.slow
@pytest.mark.skipif(not SST2.is_dir(), reason="needs ../shared/data/sst2")
def test_sst2_dev_accuracy(sentiment):
    dev = read_labelled(SST2 / "dev.tsv", "sentence", "label")
    names = {"0": "NEGATIVE", "1": "POSITIVE"}
    assert sentiment.score(dev.texts, [names[v] for v in dev.labels]) >= 0.80
