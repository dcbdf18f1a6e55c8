"""lmlab.pipeline: Hugging Face's tasks and output shapes over local models."""

import importlib.util

import numpy as np
import pytest
import torch

import lmlab
from lmlab.errors import LmlabError
from lmlab.lm.neural.run import load_masked_lm
from lmlab.pipelines import default_fill_mask_folder


def test_unknown_task_lists_the_tasks():
    with pytest.raises(LmlabError, match=r"fill-mask.*zero-shot-classification"):
        lmlab.pipeline("translation")


class FakeClassifier:
    """Just what the sentiment pipeline reads from a TextClassifier."""

    classes_ = ("NEGATIVE", "POSITIVE")

    def predict_proba(self, texts):
        return np.array([[0.2, 0.8] if "great" in t else [0.9, 0.1] for t in texts])


def test_sentiment_shapes_follow_hugging_face():
    classify = lmlab.pipeline("sentiment-analysis", model=FakeClassifier())
    assert classify("great") == [{"label": "POSITIVE", "score": 0.8}]
    assert classify(["great", "awful"]) == [
        {"label": "POSITIVE", "score": 0.8},
        {"label": "NEGATIVE", "score": 0.9},
    ]
    every = lmlab.pipeline("text-classification", model=FakeClassifier())("awful", top_k=None)
    assert every == [{"label": "NEGATIVE", "score": 0.9}, {"label": "POSITIVE", "score": 0.1}]


@pytest.mark.skipif(
    importlib.util.find_spec("lmlab.classify.resources") is None,
    reason="the packaged sentiment model comes with TextClassifier (merged separately)",
)
def test_default_sentiment_model_reads_the_lecture_examples():
    classify = lmlab.pipeline("sentiment-analysis")
    out = classify(["Transformers library is great.", "Transformers library is awful."])
    assert [o["label"] for o in out] == ["POSITIVE", "NEGATIVE"]
    assert all(0.5 < o["score"] <= 1 for o in out)


@pytest.fixture(scope="module")
def fill():
    return lmlab.pipeline("fill-mask")


def test_fill_mask_gives_top_k_sorted_probabilities(fill):
    text = "This is a simple [MASK]."
    out = fill(text, top_k=3)
    assert len(out) == 3
    assert [set(o) for o in out] == [{"score", "token", "token_str", "sequence"}] * 3
    scores = [o["score"] for o in out]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    for o in out:  # a continuation piece ("##s") joins the word before the mask
        piece = o["token_str"]
        filled = " " + piece if not piece.startswith("##") else piece[2:]
        assert o["sequence"] == text.replace(" [MASK]", filled)
    # the scores are the model's probabilities at the mask, computed independently here
    mlm = load_masked_lm(default_fill_mask_folder())
    ids = torch.tensor([mlm.tokenizer.encode(text, add_special_tokens=True)])
    probs = mlm.model(ids)[0][ids[0] == mlm.mask_id].softmax(-1)[0]
    top = probs.topk(3)
    assert [o["token"] for o in out] == top.indices.tolist()
    np.testing.assert_allclose(scores, top.values.tolist(), rtol=1e-5)


def test_default_fill_mask_model_reads_the_context(fill):
    # A masked LM still on the unigram plateau proposes `the` / `,` whatever the sentence.
    assert fill("new york stock [MASK] composite trading", top_k=1)[0]["token_str"] == "exchange"
    assert "York" in [o["token_str"] for o in fill("He lives in New [MASK].", top_k=3)]


def test_fill_mask_nests_like_hugging_face(fill):
    two = fill("The [MASK] sat on the [MASK].", top_k=2)
    assert len(two) == 2 and all(len(per_mask) == 2 for per_mask in two)
    assert two[0][0]["sequence"].endswith("on the [MASK].")  # the other mask is left as is
    batch = fill(["A [MASK] day.", "It was [MASK]."], top_k=4)
    assert len(batch) == 2 and all(len(b) == 4 and isinstance(b[0], dict) for b in batch)
    assert len(fill("A [MASK] day.")) == 5  # Hugging Face's default top_k
    with pytest.raises(LmlabError, match="no \\[MASK\\]"):
        fill("Nothing to fill.")


@pytest.fixture(scope="module")
def mock_lm():
    from mock_lm import BigramLM

    return BigramLM()


def test_text_generation_shapes_and_greedy_text(mock_lm):
    generate = lmlab.pipeline("text-generation", model=mock_lm)
    out = generate("Once upon", max_new_tokens=6)
    greedy = lmlab.generate(mock_lm, "Once upon", temperature=0, max_tokens=6).text
    assert out == [{"generated_text": "Once upon" + greedy}]
    assert generate("Once upon", max_new_tokens=6, return_full_text=False) == [
        {"generated_text": greedy}
    ]
    sampled = generate(["a", "b"], do_sample=True, num_return_sequences=3, max_new_tokens=4)
    assert len(sampled) == 2 and all(len(s) == 3 for s in sampled)
    assert all(set(d) == {"generated_text"} for s in sampled for d in s)
    with pytest.raises(LmlabError, match="do_sample"):
        generate("a", num_return_sequences=2)


def test_feature_extraction_is_tokens_by_dimension():
    extract = lmlab.pipeline("feature-extraction")
    text = "The man bites the dog."
    out = extract(text)
    n_tokens = len(extract.encoder.tokenizer.encode(text, add_special_tokens=True))
    states = np.array(out)
    assert states.shape == (1, n_tokens, 384)  # [CLS] and [SEP] included
    # mean pooling over every token is the bundled encoder's sentence vector
    expected = lmlab.encode(text, normalize_embeddings=False)
    np.testing.assert_allclose(states[0].mean(0), expected, atol=1e-4)
    assert [np.array(o).shape[:2] for o in extract(["a", "b c"])] == [(1, 3), (1, 4)]


def test_zero_shot_classification_ranks_labels():
    classify = lmlab.pipeline("zero-shot-classification")
    text = "The striker scored twice and the team won the cup final."
    labels = ["cooking", "sports", "politics"]
    out = classify(text, candidate_labels=labels)
    assert set(out) == {"sequence", "labels", "scores"} and out["sequence"] == text
    assert sorted(out["labels"]) == sorted(labels) and out["labels"][0] == "sports"
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert sum(out["scores"]) == pytest.approx(1.0)
    assert (
        classify([text, "Whisk the eggs."], candidate_labels="cooking, sports")[1]["labels"][0]
        == "cooking"
    )
    multi = classify(text, candidate_labels=labels, multi_label=True)
    assert all(0 < s < 1 for s in multi["scores"])
    assert multi["scores"] == sorted(multi["scores"], reverse=True)


def test_multi_label_scores_each_label_on_its_own():
    classify = lmlab.pipeline("zero-shot-classification")
    labels = ["sports", "politics", "cooking"]
    cases = {  # the README's example first: it used to rank politics first
        "The team won the cup.": "sports",
        "The striker scored twice and the team won the cup final.": "sports",
        "Parliament passed the new tax bill.": "politics",
        "Whisk the eggs and fold in the flour.": "cooking",
    }
    for text, label in cases.items():
        out = classify(text, candidate_labels=labels, multi_label=True)
        scores = dict(zip(out["labels"], out["scores"], strict=True))
        assert out["labels"][0] == label, out
        # the label that applies is above one half, the others below
        assert scores[label] > 0.5 > max(s for k, s in scores.items() if k != label), out
    # a label's score does not depend on the other candidates
    alone = classify("The team won the cup.", candidate_labels=["sports"], multi_label=True)
    both = classify(
        "The team won the cup.", candidate_labels=["politics", "sports"], multi_label=True
    )
    assert alone["scores"][0] == pytest.approx(both["scores"][both["labels"].index("sports")])
    with pytest.raises(LmlabError, match="candidate_labels"):
        classify(text)
