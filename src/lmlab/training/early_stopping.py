"""Early stopping: the best validation loss so far, evaluations since, and the best weights."""

from __future__ import annotations

import math
from pathlib import Path

from lmlab.training.checkpoint import Weights


class EarlyStopping:
    """Keeps the weights of the lowest validation loss in `path`; over after `patience`
    evaluations without a lower one (never, when patience is None)."""

    def __init__(self, patience: int | None, weights: Weights, path: Path, *, write: bool) -> None:
        self.patience, self.weights, self.path, self.write = patience, weights, path, write
        self.best = math.inf  # lowest validation loss so far
        self.bad_evals = 0  # evaluations since the best

    def judge(self, valid_loss: float) -> tuple[float, int]:
        """(best, bad_evals) after this evaluation; the weights are saved when it is the best.
        The caller commits them (see Loop.settle), so an interrupt cannot count it half."""
        if valid_loss < self.best:
            if self.write:
                self.weights.save(self.path)
            return valid_loss, 0
        return self.best, self.bad_evals + 1

    def exhausted(self) -> bool:
        return self.patience is not None and self.bad_evals >= self.patience
