"""The one training loop as the trained classifier methods (finetune, lora, mlp) run it.

`fit` in scikit-learn's style has no run folder of its own: given a `workdir` the loop keeps its
checkpoints, metrics.jsonl and loss.png there (so an interrupted fit can resume); without one it
runs in a temporary folder that is removed afterwards, writing no checkpoint nobody could resume.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from lmlab.training.checkpoint import ModelWeights
from lmlab.training.loop import Loop
from lmlab.training.progress import progress_callback
from lmlab.training.results import TrainingInterrupted, TrainResult


def fit_with_loop(model, objective, optimizer, config, *, total: int, device, workdir,
                  resume: bool, progress, prefix: str, budget: float | None = None,
                  ) -> TrainResult:  # fmt: skip
    """Train `model` on a classification objective; Ctrl-C without a workdir is a plain
    KeyboardInterrupt saying that a workdir is what makes a fit resumable."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        loop = Loop(
            model,
            objective,
            optimizer,
            config,
            total=total,
            out=Path(workdir if workdir is not None else tmp),
            device=device,
            weights=ModelWeights(model),
            resume=resume,
            budget=budget,
            progress=progress_callback(progress, "texts_s"),
            ylabel="cross-entropy (nats/text)",
            checkpoints=workdir is not None,
            plot=workdir is not None,
        )
        try:
            return loop.run()
        except TrainingInterrupted as e:
            if workdir is not None:
                raise
            raise KeyboardInterrupt(
                f"training interrupted at step {e.step}; fit with a workdir to be able to resume"
            ) from None
