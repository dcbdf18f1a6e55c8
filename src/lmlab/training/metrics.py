"""The metrics of a run: metrics.jsonl (one JSON line per log, validation or final evaluation),
its rewrite when a run resumes, and loss.png."""

from __future__ import annotations

import json
from pathlib import Path

from lmlab.home import atomic_file, atomic_write_text


class MetricsLog:
    """The lines logged so far (`history`), appended to metrics.jsonl by the writing process."""

    def __init__(self, path: Path, *, write: bool = True, ylabel: str = "") -> None:
        self.path, self.write, self.history = path, write, []
        self.ylabel = ylabel or "cross-entropy (nats/token)"

    def log(self, record: dict) -> None:
        self.history.append(record)
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def restore(self, last_step: int) -> None:
        """The lines up to `last_step` (those of the checkpoint resumed from); the file is
        rewritten without the later ones, which the resumed run writes again."""
        lines = self.path.read_text().splitlines() if self.path.is_file() else []
        self.history = [r for r in map(json.loads, lines) if r["step"] <= last_step]
        if self.write:
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.history))

    def last(self, key: str, default=None):
        """The value of `key` in the last line that has it."""
        return next((r[key] for r in reversed(self.history) if key in r), default)

    def plot(self, path: Path) -> None:
        """loss.png: training loss and validation loss against the step."""
        if self.write:
            plot(self.history, path, self.ylabel)


def plot(history: list[dict], path: Path, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_points = [(r["step"], r["loss"]) for r in history if "loss" in r]
    valid_points = [(r["step"], r["valid_loss"]) for r in history if "valid_loss" in r]
    if not train_points:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train_points, strict=True), label="training loss")
    if valid_points:
        ax.plot(*zip(*valid_points, strict=True), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
