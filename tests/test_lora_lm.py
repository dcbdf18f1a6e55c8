"""LoRA fine-tuning of the bundled causal LM: the loss falls, only adapters move, the run loads."""

import json

import pytest
import torch
from test_cli import lmlab as lmlab_cli

import lmlab
from lmlab.models import BUNDLED, DEFAULT_LM, bundled_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bundled_path(BUNDLED[DEFAULT_LM]) is None, reason="no bundled chat model"),
]
TEXT = "The quokka quietly quilts quinces in Quebec.\n" * 20


def test_lora_steps_lower_the_loss_and_the_run_loads(tmp_path):
    corpus = tmp_path / "quokka.txt"
    corpus.write_text(TEXT)
    # The command line, as a user trains (lmlab.lm.lora_lm.train_lora underneath).
    done = lmlab_cli("train", "lora", str(corpus), "--out", str(tmp_path / "run"), "--steps", "6",
                     "--batch-size", "2", "--context", "24", "--lr", "3e-3", "--warmup", "0",
                     "--seed", "0", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["train_loss"] < 0.7 * result["first_loss"]
    assert result["steps"] == 6 and result["valid_loss"] is None
    # The adapter alone (no copy of the base model), and the files of every run trained here.
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "lmlab.json",
        "adapter.safetensors",
        "checkpoint",
        "metrics.jsonl",
        "loss.png",
    }
    assert (tmp_path / "run" / "adapter.safetensors").stat().st_size < 10e6

    tuned = lmlab.load_lm(tmp_path / "run")
    base = lmlab.load_lm(DEFAULT_LM, backend="torch", dtype="float32")
    tuned_state = tuned.model.state_dict()
    base_state = base.model.state_dict()
    adapters = {k for k in tuned_state if "lora_" in k}
    assert adapters and all(tuned_state[k].abs().sum() > 0 for k in adapters if "lora_B" in k)
    # Every other weight is the base model's own (peft keeps an adapted layer's as base_layer).
    untouched = {
        k.replace(".base_layer.", "."): v for k, v in tuned_state.items() if k not in adapters
    }
    assert untouched.keys() == base_state.keys()
    assert all(torch.equal(untouched[k], v) for k, v in base_state.items())

    # The adapted model has learnt the text: it scores it better than the base model.
    assert lmlab.perplexity(tuned, TEXT) < lmlab.perplexity(base, TEXT)
    out = lmlab.generate(tuned, "The quokka", max_tokens=8, temperature=0)
    assert out.text.strip()


def test_lora_run_exists_already(tmp_path):
    (tmp_path / "lmlab.json").write_text("{}")
    done = lmlab_cli("train", "lora", str(tmp_path / "lmlab.json"), "--out", str(tmp_path))
    assert done.returncode == 2 and "already holds a run" in done.stderr
    assert (tmp_path / "lmlab.json").read_text() == "{}"  # the user's folder is left as it was
