"""Fine-tuning and LoRA: which weights move, saving and loading, and that they learn."""

import random

import numpy as np
import pytest
import torch

from lmlab.classify.classifier import check_options, method_options
from lmlab.classify.finetune import FineTune, LoRA, _batches, _encoder_folder
from lmlab.classify.method import method_class
from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path

pytestmark = pytest.mark.skipif(
    bundled_path(BUNDLED[DEFAULT_ENCODER]) is None, reason="the bundled encoder is not installed"
)

GOOD = ["wonderful", "delightful", "a joy", "brilliant", "moving", "superb", "great", "lovely"]
BAD = ["dreadful", "boring", "a mess", "awful", "tedious", "terrible", "dull", "painful"]
CLASSES = ["negative", "positive"]


def _sentences() -> tuple[list[str], np.ndarray]:
    """64 made-up reviews: 32 with a good word, 32 with a bad one."""
    frames = ["the film is {}", "{} acting all round", "what a {} story", "it was {} ."]
    texts, y = [], []
    for label, words in ((0, BAD), (1, GOOD)):
        for word in words:
            for frame in frames:
                texts.append(frame.format(word))
                y.append(label)
    return texts, np.array(y)


TEXTS, Y = _sentences()
FAST = dict(batch_size=16, max_length=16, seed=0)  # a few quick steps


def _initial_state(method) -> dict[str, torch.Tensor]:
    """The weights `fit` starts from: it seeds torch, then builds the model."""
    torch.manual_seed(method.options["seed"])
    model = method._build(_encoder_folder(method.options["encoder"]), len(CLASSES))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _changed(before: dict, method) -> set[str]:
    after = method.model_.state_dict()
    assert after.keys() == before.keys()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.fixture(scope="module")
def lora_fitted():
    method = LoRA(epochs=3, lr=3e-3, **FAST)
    before = _initial_state(method)
    return method.fit(TEXTS, Y, CLASSES, progress=False), before


def test_methods_are_registered():
    assert method_class("finetune") is FineTune
    assert method_class("lora") is LoRA


def test_shared_options_reach_only_the_methods_that_take_them():
    """`compare` hands each method the shared options it takes (found in its `defaults`)."""
    assert {"max_minutes", "freeze"} <= set(method_options("finetune"))
    assert "lora_r" in method_options("lora") and "verbalizers" not in method_options("lora")
    with pytest.raises(LmlabError, match="verbalizers"):
        check_options("finetune", {"verbalizers": {"0": "bad"}})


def test_freeze_all_trains_only_the_head():
    method = FineTune(freeze="all", epochs=1, lr=1e-2, **FAST)
    before = _initial_state(method)
    method.fit(TEXTS, Y, CLASSES, progress=False)
    assert _changed(before, method) == {"head.1.weight", "head.1.bias"}


def test_freeze_k_keeps_the_embeddings_and_first_k_layers():
    method = FineTune(freeze=4, epochs=0.25, lr=1e-3, **FAST)  # one step
    before = _initial_state(method)
    method.fit(TEXTS, Y, CLASSES, progress=False)
    changed = _changed(before, method)
    assert not {k for k in changed if ".embeddings." in k or ".layer.0." in k or ".layer.3." in k}
    for name in ("encoder.body.encoder.layer.4.", "encoder.body.encoder.layer.5.", "head.1."):
        assert any(k.startswith(name) for k in changed), name
    assert method.info["steps"] == 1


def test_lora_changes_only_adapters_and_head(lora_fitted):
    method, before = lora_fitted
    changed = _changed(before, method)
    assert changed, "nothing was trained"
    assert all("lora_" in k or k.startswith("head.") for k in changed)
    # LoRA starts B at zero (the update B A is zero): every adapter that saw a gradient moved.
    lora_b = [k for k in before if "lora_B" in k]
    assert len(lora_b) == 6 * 6  # 6 linear layers (q, k, v, 3 dense) in each of 6 layers
    assert all(k in changed for k in lora_b)
    # The base weights are the bundled encoder's own.
    from transformers import AutoModel

    base = AutoModel.from_pretrained(_encoder_folder(DEFAULT_ENCODER)).state_dict()
    tuned = {
        k.removeprefix("encoder.body.").replace(".base_layer", ""): v
        for k, v in method.model_.state_dict().items()
        if "lora_" not in k and k.startswith("encoder.body.")
    }
    assert tuned.keys() == base.keys()
    assert all(torch.equal(tuned[k], base[k]) for k in base)


def test_lora_learns_the_made_up_reviews(lora_fitted):
    method, _ = lora_fitted
    proba = method.predict_proba(TEXTS)
    assert proba.shape == (64, 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert (proba.argmax(1) == Y).mean() >= 0.9


def test_lora_saves_only_the_adapter_and_head(lora_fitted, tmp_path):
    method, _ = lora_fitted
    method.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["adapter.safetensors"]
    assert (tmp_path / "adapter.safetensors").stat().st_size < 2_000_000  # 1.3 MB; MiniLM: 90 MB
    loaded = LoRA.load(tmp_path, method.options, CLASSES)
    probe = ["a wonderful film", "dull and tedious", "it was a joy"]
    np.testing.assert_allclose(loaded.predict_proba(probe), method.predict_proba(probe), atol=1e-5)


def test_lora_load_with_another_encoder_is_a_clear_error(lora_fitted, tmp_path):
    method, _ = lora_fitted
    method.save(tmp_path)
    with pytest.raises(LmlabError, match="saved with this encoder"):
        LoRA.load(tmp_path, {**method.options, "lora_r": 4}, CLASSES)


def test_finetune_saves_and_loads_the_tuned_encoder(tmp_path):
    method = FineTune(freeze=5, epochs=0.5, lr=1e-3, **FAST)
    method.fit(TEXTS, Y, CLASSES, progress=False)
    method.save(tmp_path)
    assert (tmp_path / "encoder" / "model.safetensors").is_file()
    assert (tmp_path / "encoder" / "tokenizer.json").is_file()
    loaded = FineTune.load(tmp_path, method.options, CLASSES)
    probe = ["a wonderful film", "dull and tedious"]
    np.testing.assert_allclose(loaded.predict_proba(probe), method.predict_proba(probe), atol=1e-5)
    # The saved encoder folder is an encoder of its own, with the tuned last layer.
    import lmlab

    tuned = lmlab.load_encoder(tmp_path / "encoder", backend="torch").encode(probe)
    original = lmlab.load_encoder(DEFAULT_ENCODER, backend="torch").encode(probe)
    assert not np.allclose(tuned, original, atol=1e-4)


def test_finetune_of_our_bert_run(tmp_path):
    from lmlab.training import TrainConfig, train

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS * 4))
    config = TrainConfig(steps=3, batch_size=4, device="cpu", eval_every=10)
    run = tmp_path / "bert"
    train("bert", [corpus], run, preset="tiny", vocab_size=200, config=config, progress=False)
    method = FineTune(encoder=str(run), freeze=1, epochs=1, lr=1e-3, **FAST)
    before = _initial_state(method)
    method.fit(TEXTS, Y, CLASSES, progress=False)
    changed = _changed(before, method)
    assert not {k for k in changed if k.startswith(("encoder.body.wte", "encoder.body.blocks.0."))}
    assert any(k.startswith("encoder.body.blocks.1.") for k in changed)
    method.save(tmp_path / "clf")
    loaded = FineTune.load(tmp_path / "clf", method.options, CLASSES)
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), method.predict_proba(TEXTS), atol=1e-5)


def test_length_batches_cover_every_text_once_per_epoch_in_similar_lengths():
    lengths = [random.Random(i).randint(1, 60) for i in range(1000)]
    ids = [[0] * n for n in lengths]
    batches = _batches(ids, 10, random.Random(0))
    epoch = [next(batches) for _ in range(100)]
    assert sorted(i for b in epoch for i in b) == list(range(1000))
    # Sorted within pools: a batch spans a small part of the range of lengths.
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch])
    assert spread < 5


@pytest.mark.parametrize(
    "options, param",
    [
        ({"freeze": -1}, "freeze"),
        ({"freeze": "some"}, "freeze"),
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"max_minutes": 0}, "max_minutes"),
    ],
)
def test_bad_options_are_clear_errors(options, param):
    with pytest.raises(LmlabError) as e:
        FineTune(**options)
    assert e.value.param == param


def test_lora_options():
    with pytest.raises(LmlabError, match="no option lora_r"):
        FineTune(lora_r=4)
    with pytest.raises(LmlabError, match="freeze does not apply"):
        LoRA(freeze=2)
    assert LoRA().options["lr"] == 1e-3 and FineTune().options["lr"] == 1e-4


def test_freezing_more_layers_than_the_encoder_has():
    with pytest.raises(LmlabError, match="has 6 layers"):
        FineTune(freeze=7, **FAST).fit(TEXTS, Y, CLASSES, progress=False)


def test_predict_before_fit():
    with pytest.raises(LmlabError, match="not fitted"):
        FineTune().predict_proba(["text"])
