"""Zero-shot and few-shot classification (lmlab.classify.prompting).

The mock bigram LM (tests/mock_lm.py, a byte tokenizer) makes log-probabilities exact and
cheap: a verbalizer's score can be checked by hand with lmlab.score. The bundled chat model
(llama backend) checks the batched path against lmlab.score too.
"""

import itertools
import json

import numpy as np
import pytest
import torch

import lmlab
from lmlab.classify.method import method_class
from lmlab.classify.prompting import (
    CONTENT_FREE,
    FewShot,
    ZeroShot,
    _model,
    draw_shots,
    few_shot_messages,
    parse_answer,
    verbalizer_logprobs,
)
from lmlab.errors import LmlabError
from lmlab.runs import RUN_KINDS, RunKind

TEMPLATE = "Review: {text}\nSentiment:"
TEXTS = ["a gripping, funny film", "dull and far too long", "ok"]


@pytest.fixture
def mock_run(tmp_path, monkeypatch):
    """A run directory that loads the mock bigram LM (by path, as a user names a model)."""
    monkeypatch.setitem(RUN_KINDS, "mock", RunKind(lm="mock_lm:load_run"))
    folder = tmp_path / "mock-run"
    folder.mkdir()
    (folder / "lmlab.json").write_text(json.dumps({"kind": "mock"}))
    return str(folder)


def forced_lm_run(tmp_path, monkeypatch, chain: str):
    """A mock run whose greedy answer after ":" is `chain` then a newline (a bigram table;
    `chain` has no repeated character)."""
    from mock_lm import BigramLM

    table = torch.zeros(257, 257)
    path = [ord(":"), *map(ord, chain), ord("\n")]
    for a, b in itertools.pairwise(path):
        table[a, b] = 10.0
    lm = BigramLM(table)
    monkeypatch.setattr("mock_lm.load_run", lambda folder: lm)
    monkeypatch.setitem(RUN_KINDS, "forced", RunKind(lm="mock_lm:load_run"))
    folder = tmp_path / f"forced-{chain}"
    folder.mkdir()
    (folder / "lmlab.json").write_text(json.dumps({"kind": "forced"}))
    return str(folder)


def hand_logprob(lm, prompt: str, word: str) -> float:
    """log P(word | prompt) = log P(prompt + word) - log P(prompt), with lmlab.score."""
    return lmlab.score(lm, prompt + word).total_logprob - lmlab.score(lm, prompt).total_logprob


def test_lm_zero_shot_picks_the_verbalizer_with_the_higher_logprob(mock_run):
    verbalizers = {"neg": "bad", "pos": "good", "mixed": "so-so"}  # several tokens each
    zs = ZeroShot(model=mock_run, template=TEMPLATE, verbalizers=verbalizers, calibrate=False)
    proba = zs.fit([], np.array([]), list(verbalizers)).predict_proba(TEXTS)
    lm = _model(zs.options)
    hand = np.array(
        [[hand_logprob(lm, TEMPLATE.format(text=t), " " + w) for w in verbalizers.values()]
         for t in TEXTS]
    )  # fmt: skip
    expected = np.exp(hand) / np.exp(hand).sum(1, keepdims=True)
    np.testing.assert_allclose(proba, expected, rtol=1e-5)
    assert (proba.argmax(1) == hand.argmax(1)).all()


def test_batched_scoring_equals_score_on_the_bundled_model(llama_lm):
    tok = llama_lm.tokenizer
    prompts = ["Review: great fun.\nSentiment:", "Hi"]
    words = [" negative", " absolutely wonderful"]  # one token, then several
    ids = [tok.encode(p, add_special_tokens=True) for p in prompts]
    got = verbalizer_logprobs(llama_lm, ids, [tok.encode(w) for w in words])
    for r, prompt in enumerate(prompts):
        for c, word in enumerate(words):
            full = lmlab.score(llama_lm, prompt + word)
            n = len(tok.encode(word))
            assert full.token_ids[-n:] == tok.encode(word)  # the same tokens were scored
            assert got[r, c] == pytest.approx(sum(full.logprobs[-n:]), abs=2e-3)


def test_calibration_divides_by_the_content_free_probabilities(mock_run):
    options = dict(model=mock_run, verbalizers={"a": "yes", "b": "no"})
    plain = ZeroShot(**options, calibrate=False).fit([], np.array([]), ["a", "b"])
    calibrated = ZeroShot(**options, calibrate=True).fit([], np.array([]), ["a", "b"])
    p_free = plain.predict_proba(list(CONTENT_FREE)).mean(0)
    np.testing.assert_allclose(calibrated.calibration_, p_free)
    ratio = plain.predict_proba(TEXTS) / p_free
    np.testing.assert_allclose(
        calibrated.predict_proba(TEXTS), ratio / ratio.sum(1, keepdims=True), rtol=1e-6
    )


def test_cosine_zero_shot_is_a_softmax_of_cosines():
    descriptions = {"sport": "a football match", "food": "a recipe for soup"}
    zs = ZeroShot(via="cosine", descriptions=descriptions, temperature=0.1)
    texts = ["The striker scored twice in the final.", "Simmer the onions and add stock."]
    proba = zs.fit([], np.array([]), ["sport", "food"]).predict_proba(texts)
    cos = lmlab.encode(texts) @ lmlab.encode(list(descriptions.values())).T
    expected = np.exp(cos / 0.1) / np.exp(cos / 0.1).sum(1, keepdims=True)
    np.testing.assert_allclose(proba, expected, rtol=1e-5)
    assert proba.argmax(1).tolist() == [0, 1]


@pytest.mark.parametrize(("k", "n_classes"), [(4, 2), (8, 2), (5, 3), (2, 3)])
def test_shots_are_balanced_and_seeded(k, n_classes):
    y = np.arange(60) % n_classes
    picked = draw_shots(y, n_classes, k, seed=3)
    assert len(picked) == len(set(picked)) == k
    counts = np.bincount(y[picked], minlength=n_classes)
    assert counts.max() - counts.min() <= 1
    assert picked == draw_shots(y, n_classes, k, seed=3)
    assert picked != draw_shots(y, n_classes, k, seed=4) or k <= 2


def test_a_small_class_gives_its_places_to_the_others():
    y = np.array([0] * 10 + [1])
    assert sorted(y[draw_shots(y, 2, 4, seed=0)].tolist()) == [0, 0, 0, 1]
    with pytest.raises(LmlabError, match="only 11"):
        draw_shots(y, 2, 12, seed=0)


@pytest.mark.parametrize("k", [0, 1, 4, 8])
def test_few_shot_prompt_has_exactly_k_examples(k, llama_lm, mock_run):
    texts = [f"text number {i}" for i in range(20)]
    y = np.arange(20) % 2
    fs = FewShot(shots=k, model=mock_run).fit(texts, y, ["negative", "positive"])
    assert len(fs.examples_) == k
    messages = few_shot_messages(fs.examples_, "new text", ["negative", "positive"])
    assert sum(m["role"] == "assistant" for m in messages) == k
    assert [m["content"] for m in messages[1:-1:2]] == [t for t, _ in fs.examples_]
    # rendered with the chat model's template: k answers plus the turn it is to write
    chat = llama_lm.tokenizer.decode(fs.prompt(llama_lm, "new text"), skip_special_tokens=False)
    assert chat.count("<|im_start|>assistant") == k + 1
    assert sum(chat.count(t + "<|im_end|>") for t in texts) == k
    # a model without a chat template gets "Text: ... Label: ..." blocks
    plain = fs.prompt(_model(fs.options), "new text")
    assert bytes(plain).decode().count("\nLabel:") == k + 1


def test_answers_parse_to_classes():
    names = [["negative", "0"], ["positive", "1"]]
    assert parse_answer(" Positive.", names) == 1
    assert parse_answer("NEGATIVE", names) == 0
    assert parse_answer("The sentiment is negative", names) == 0
    assert parse_answer("1", names) == 1
    assert parse_answer("I cannot tell", names) is None
    assert parse_answer("either positive or negative", names) is None


def test_unparseable_answers_are_counted_and_get_the_prior(tmp_path, monkeypatch):
    texts = ["good", "bad", "fine", "great"]
    y = np.array([1, 0, 1, 1])
    parsed = forced_lm_run(tmp_path, monkeypatch, "no")
    fs = FewShot(shots=2, model=parsed, verbalizers={"n": "no", "y": "yes"})
    proba = fs.fit(texts, y, ["n", "y"]).predict_proba(["x", "z"])
    assert fs.info["unparseable"] == 0
    np.testing.assert_array_equal(proba, [[1, 0], [1, 0]])
    garbled = forced_lm_run(tmp_path, monkeypatch, "xy")
    fs = FewShot(shots=2, model=garbled, verbalizers={"n": "no", "y": "yes"})
    proba = fs.fit(texts, y, ["n", "y"]).predict_proba(["x", "z", "w"])
    assert fs.info["unparseable"] == 3
    assert fs.info["unparseable_examples"] == ["xy"] * 3
    np.testing.assert_allclose(proba, [[0.25, 0.75]] * 3)  # the training data's class shares


def test_multi_class_rows_sum_to_one(mock_run):
    classes = ["one", "two", "three", "four", "five"]  # Yelp-style stars
    zs = ZeroShot(model=mock_run).fit([], np.array([]), classes)
    proba = zs.predict_proba(TEXTS)
    assert proba.shape == (3, 5)
    np.testing.assert_allclose(proba.sum(1), 1.0)


def test_save_and_load_keep_what_fit_set_up(tmp_path, mock_run):
    texts = [f"t{i}" for i in range(12)]
    y = np.arange(12) % 3
    classes = ["a", "b", "c"]
    fs = FewShot(shots=5, model=mock_run, seed=7).fit(texts, y, classes)
    fs.save(tmp_path)
    again = method_class("few-shot").load(tmp_path, fs.options, classes)
    assert again.examples_ == fs.examples_ and again.prior_ == fs.prior_
    np.testing.assert_array_equal(again.predict_proba(TEXTS), fs.predict_proba(TEXTS))
    json.dumps(fs.options)  # options are recorded in the classifier's lmlab.json

    zs = ZeroShot(model=mock_run).fit([], np.array([]), classes)  # calibrated by default
    zs.save(tmp_path)
    again = method_class("zero-shot").load(tmp_path, zs.options, classes)
    np.testing.assert_allclose(again.predict_proba(TEXTS), zs.predict_proba(TEXTS))
    json.dumps(zs.options)


def test_bad_options_are_clear_errors(mock_run):
    with pytest.raises(LmlabError, match="unknown classes: maybe"):
        ZeroShot(model=mock_run, verbalizers={"maybe": "perhaps"}).fit([], [], ["a", "b"])
    with pytest.raises(LmlabError, match="classes is empty"):
        ZeroShot(model=mock_run).fit([], [], [])
    # one class is allowed: the zero-shot pipeline scores a single candidate label
    assert ZeroShot(model=mock_run).fit([], [], ["a"]).predict_proba(["x"]).tolist() == [[1.0]]
    with pytest.raises(LmlabError, match="two classes share the word 'good' \\(0 and 1\\)"):
        ZeroShot(model=mock_run, verbalizers={"0": "good", "1": "Good "}).fit([], [], ["0", "1"])
    with pytest.raises(LmlabError, match="share the word 'yes'"):  # given and default alike
        FewShot(model=mock_run, verbalizers={"no": "yes"}).fit(["a"], np.array([0]), ["no", "yes"])
    same = {"a": "a recipe", "b": "a recipe"}
    with pytest.raises(LmlabError, match="share the description 'a recipe'"):
        ZeroShot(via="cosine", descriptions=same).fit([], np.array([]), ["a", "b"])
    with pytest.raises(LmlabError, match="via"):
        ZeroShot(via="nli")
    with pytest.raises(LmlabError, match="placeholder"):
        ZeroShot(template="no placeholder")
    with pytest.raises(LmlabError, match="chat template"):
        ZeroShot(model=mock_run, chat=True).fit([], np.array([]), ["a", "b"]).predict_proba(["x"])


def test_prompts_are_grouped_within_the_batch_and_the_shared_cache():
    from mock_lm import BigramLM

    from lmlab.classify.prompting import _groups

    lm = BigramLM(context_length=100)
    lm.max_batch_size = 3
    prompts = [[1] * n for n in (10, 20, 30, 40, 5, 5, 5, 5, 95)]
    groups = _groups(lm, prompts, tail=2)
    assert [i for g in groups for i in g] == list(range(len(prompts)))
    for g in groups:
        assert len(g) <= 3
        assert len(g) == 1 or sum(len(prompts[i]) + 2 for i in g) <= 100
    assert groups == [[0, 1, 2], [3, 4, 5], [6, 7], [8]]
    assert _groups(lm, [], tail=2) == []


def test_string_labels_work_as_indices_do_and_predict_returns_them(tmp_path, monkeypatch):
    """scikit-learn's convention: y holds the labels, classes_ keeps them as given and
    predict returns them (string labels used to end in "invalid literal for int()")."""
    texts = ["good", "bad", "fine", "great", "awful", "nice"]
    labels = ["pos", "neg", "pos", "pos", "neg", "pos"]
    classes = ["neg", "pos"]
    model = forced_lm_run(tmp_path, monkeypatch, "pos")  # answers "pos" to everything
    by_label = FewShot(shots=4, model=model).fit(texts, labels, classes)
    by_index = FewShot(shots=4, model=model).fit(texts, np.array([1, 0, 1, 1, 0, 1]), classes)
    assert by_label.examples_ == by_index.examples_
    assert all(dict(zip(texts, labels, strict=True))[t] == c for t, c in by_label.examples_)
    assert by_label.prior_ == pytest.approx([2 / 6, 4 / 6])
    assert by_label.classes_ == classes
    predicted = by_label.predict(["x", "z"])
    assert predicted.dtype == object and predicted.tolist() == ["pos", "pos"]
    zs = ZeroShot(model=model, calibrate=False).fit([], [], classes)
    assert set(zs.predict(TEXTS)) <= set(classes)


def test_integer_classes_are_labels_as_in_scikit_learn(tmp_path, monkeypatch):
    """Classes 1..3 (stars) with y = [3, 1, ...]: the values are labels, not indices."""
    texts = ["a", "b", "c", "d", "e", "f"]
    stars = [3, 1, 3, 2, 1, 3]
    model = forced_lm_run(tmp_path, monkeypatch, "3")
    fs = FewShot(shots=6, model=model).fit(texts, stars, [1, 2, 3])
    assert sorted(fs.examples_) == sorted(zip(texts, stars, strict=True))
    assert fs.prior_ == pytest.approx([2 / 6, 1 / 6, 3 / 6])
    assert fs.predict(["x"]).tolist() == [3]  # the answer "3" parses to the class 3


def test_wrong_labels_are_one_line_errors(mock_run):
    classes = ["negative", "positive"]
    with pytest.raises(LmlabError, match="labels not among the classes: 'neutral'"):
        FewShot(model=mock_run).fit(["a", "b"], ["negative", "neutral"], classes)
    with pytest.raises(LmlabError, match="2 texts but 3 labels"):
        FewShot(model=mock_run).fit(["a", "b"], ["negative"] * 3, classes)
    with pytest.raises(LmlabError, match=r"indices outside 0\.\.1 \(2\)"):
        FewShot(model=mock_run).fit(["a", "b"], np.array([0, 2]), classes)
    with pytest.raises(LmlabError, match="repeat a label: negative"):
        ZeroShot(model=mock_run).fit([], [], ["negative", "negative"])
    with pytest.raises(LmlabError, match="not fitted"):
        ZeroShot(model=mock_run).predict(["x"])
