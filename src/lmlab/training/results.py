"""What training takes and gives back: TrainConfig, TrainResult, TrainingInterrupted.

A leaf module (no torch): the CLI, the run loaders and the objectives import these types
without importing the loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    """How to train (the model's shape is its own config dataclass)."""

    steps: int | None = None  # optimizer steps; None: from epochs, else 1000
    epochs: float | None = None  # passes over the training tokens (sets steps)
    batch_size: int = 12
    accumulate: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    min_lr: float | None = None  # the end of the cosine; None: lr / 10
    warmup: int = 100  # steps of linear warm-up
    schedule: str = "cosine"  # after warm-up: cosine, or linear (word2vec's decay) to min_lr
    optimizer: str = "adamw"  # adamw, or sgd (plain SGD, as Zaremba et al. 2014 trained LSTMs)
    weight_decay: float | None = None  # None: 0.1 for adamw (decoupled); 0 for sgd (an L2 term)
    beta2: float = 0.99  # 0.99 rather than 0.999: small models, few tokens per step (nanoGPT)
    grad_clip: float = 1.0  # clip the gradient norm to this; 0 disables
    eval_every: int = 250  # steps between validation losses (and checkpoints)
    eval_batches: int = 20  # random windows batches per periodic validation estimate
    patience: int | None = None  # stop after this many evaluations without improvement
    seed: int = 1337
    device: str = "auto"  # auto: cuda, then mps, then cpu
    # float32, or bfloat16: matrix products in bfloat16 under autocast, weights and optimizer
    # state kept in float32 (nanoGPT's `dtype`). auto: bfloat16 where the device computes in it
    # natively (see pick_dtype), else float32.
    dtype: str = "auto"
    log_every: int = 10  # steps between metrics.jsonl lines


@dataclass
class TrainResult:
    """What a run produced: where, how far, and its final numbers."""

    out: str
    steps: int
    train_loss: float
    valid_loss: float | None
    valid_perplexity: float | None
    tokens_per_second: float  # the objective's units: tokens for LMs, texts for classifiers
    seconds: float
    stopped_early: bool = False
    first_step: int = 0  # the step this call started from (> 0 when it resumed a run)
    already_complete: bool = False  # resumed a run that had finished: nothing was trained
    history: list[dict] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("history")
        return out


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint to resume from was written; its message
    says where and how to continue."""

    def __init__(self, step: int, out: Path) -> None:
        self.step, self.out = step, out
        super().__init__(
            f"interrupted at step {step}: checkpoint saved in {out}; "
            "run the same command with --resume to continue"
        )
