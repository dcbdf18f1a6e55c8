"""TRL, the peer of `lmlab train sft` and `lmlab train dpo`, run as its users run it:
SFTTrainer and DPOTrainer with a peft LoRA config on the bundled model's transformers weights,
on CPU, at TRL's default precision (recorded: its configs turn bfloat16 on where the CPU has
it). Each returns the first logged loss and optimizer steps per second (TRL's train_runtime)."""

from __future__ import annotations

from pathlib import Path

import torch

from lmlab.lm.gguf_cache import converted_folder
from lmlab.models import DEFAULT_LM, resolve

LR, BATCH = 1e-4, 8


def _model_and_lora():
    """The bundled model as transformers loads it, and lmlab's LoRA (every linear layer but the
    output layer, r 8, alpha 16, no dropout)."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = converted_folder(resolve(DEFAULT_LM).path)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    output = model.get_output_embeddings()
    targets = [
        n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not output
    ]
    lora = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
    )
    return model, AutoTokenizer.from_pretrained(folder), lora


def _common(out: Path, steps: int) -> dict:
    return dict(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=BATCH,
        learning_rate=LR,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
        weight_decay=0.0,
        warmup_steps=0,
    )


def _figures(trainer, steps: int) -> dict:
    history = trainer.state.log_history
    runtime = next(h["train_runtime"] for h in history if "train_runtime" in h)
    args = trainer.args  # TRL's defaults choose the precision (bfloat16 where the CPU has it)
    precision = "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32"
    return {"first_loss": history[0]["loss"], "steps_per_s": steps / runtime, "dtype": precision}


def _train(trainer_cls, args, rows: list[dict], steps: int) -> dict:
    """Train a TRL trainer on `rows` with lmlab's LoRA; its figures."""
    from datasets import Dataset

    model, tokenizer, lora = _model_and_lora()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.train()
    return _figures(trainer, steps)


def trl_sft(rows: list[dict], steps: int, out: Path) -> dict:
    """SFTTrainer on conversations {"messages": [user, assistant]}, as prompt/completion so the
    loss counts the answer only (as lmlab's)."""
    import trl

    pc = [{"prompt": r["messages"][:1], "completion": r["messages"][1:]} for r in rows]
    args = trl.SFTConfig(**_common(out, steps), completion_only_loss=True)
    return _train(trl.SFTTrainer, args, pc, steps)


def trl_dpo(pairs: list[dict], steps: int, out: Path) -> dict:
    """DPOTrainer on {"prompt", "chosen", "rejected"} strings, as conversations (the chat
    template applied, as lmlab does); the reference is the base with adapters off."""
    import trl

    rows = [
        {
            "prompt": [{"role": "user", "content": p["prompt"]}],
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
        }
        for p in pairs
    ]
    args = trl.DPOConfig(**_common(out, steps), beta=0.1, max_length=1024)
    return _train(trl.DPOTrainer, args, rows, steps)
