"""One training loop for every model trained here, over pluggable objectives.

  results.py         TrainConfig, TrainResult, TrainingInterrupted (no torch: a leaf)
  objective.py       the Objective protocol: batches, loss, validation, state for resume
  objectives/        causal LM (ours, and a pretrained LM through LoRA adapters), masked LM
                     with NSP, sequence classification
  loop.py            the loop: schedule, accumulation, DDP, dtype, clipping, Ctrl-C, resume
  checkpoint.py      atomic checkpoints of weights, optimizer, data position, random states
  metrics.py         metrics.jsonl and loss.png
  early_stopping.py  the best validation loss, patience, the best weights
  optim.py           AdamW/SGD, the warm-up and cosine schedule, clipping in the fused update
  devices.py         device, dtype, torchrun
  progress.py        a progress bar for the loop's callback
  lm.py, lm_setup.py `train()`: a language model of ours and its run directory

Maximum likelihood with teacher forcing for the language models: the model reads tokens
0..T-1 of a window and is scored by cross-entropy on tokens 1..T (objectives/causal.py).
"""

from importlib import import_module

# name -> the module that defines it; imported on first use, so that `lmlab.training.results`
# (and the CLI that reads TrainConfig from it) does not import torch and the loop.
_EXPORTS = {
    "encode_corpus": "lmlab.lm.neural.scoring",
    "evaluate_loss": "lmlab.lm.neural.scoring",
    "masked_metrics": "lmlab.lm.neural.scoring",
    "CHECKPOINT": "lmlab.training.checkpoint",
    "pick_device": "lmlab.training.devices",
    "pick_dtype": "lmlab.training.devices",
    "start_distributed": "lmlab.training.devices",
    "train": "lmlab.training.lm",
    "TOKENIZER_KINDS": "lmlab.training.lm_setup",
    "Loop": "lmlab.training.loop",
    "Objective": "lmlab.training.objective",
    "Batches": "lmlab.training.objectives.causal",
    "clip_in_update": "lmlab.training.optim",
    "learning_rate": "lmlab.training.optim",
    "optimizer_for": "lmlab.training.optim",
    "TrainConfig": "lmlab.training.results",
    "TrainResult": "lmlab.training.results",
    "TrainingInterrupted": "lmlab.training.results",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lmlab.training' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
