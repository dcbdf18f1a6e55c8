"""Against the peer: TRL's SFTTrainer on the same conversations, model and batch gives the
same first-batch loss (the assistant tokens only, averaged over them) within 1e-4."""

import json

import pytest
import torch
from posttrain_models import no_chat_model, tiny_chat_lm

from lmlab.training.results import TrainConfig

pytestmark = [pytest.mark.slow, pytest.mark.skipif(no_chat_model, reason="no chat model")]
QA = [("Capital of France?", "Paris."), ("Say hi.", "Hi there!"), ("Two plus two?", "Four."),
      ("Colour of the sky?", "Blue, mostly.")]  # fmt: skip


def test_the_first_sft_loss_is_trls(tmp_path):
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmlab.posttrain.train import train_sft

    base = tiny_chat_lm(tmp_path / "tiny")
    rows = [{"prompt": [{"role": "user", "content": q}],
             "completion": [{"role": "assistant", "content": a}]} for q, a in QA]  # fmt: skip
    data = tmp_path / "pc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = TrainConfig(steps=1, batch_size=4, lr=1e-3, warmup=0, device="cpu", dtype="float32",
                         log_every=1)  # fmt: skip
    ours = train_sft(data, tmp_path / "ours", base=base, valid_fraction=None, config=config,
                     progress=False).history[0]["loss"]  # fmt: skip

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    args = trl.SFTConfig(output_dir=str(tmp_path / "trl"), max_steps=1, logging_steps=1,
                         per_device_train_batch_size=4, learning_rate=1e-3, report_to="none",
                         use_cpu=True, save_strategy="no", completion_only_loss=True)  # fmt: skip
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=AutoTokenizer.from_pretrained(base))  # fmt: skip
    trainer.train()
    theirs = trainer.state.log_history[0]["loss"]
    assert ours == pytest.approx(theirs, abs=1e-4)
