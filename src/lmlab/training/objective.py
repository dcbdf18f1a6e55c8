"""The Objective: what a batch is and how its loss and validation metrics are computed.

The loop (loop.py) owns everything else. An objective

- draws its next micro-batch itself, from a data source whose position it can save and restore
  (`state_dict` / `load_state_dict`: the loop keeps it in checkpoints, per process, and rolls it
  back when Ctrl-C lands inside a step), together with any state it carries from batch to batch
  (a recurrent model's hidden state, read by truncated back-propagation through time);
- computes that batch's loss on the network (`loss(net)`; the net may be wrapped in
  DistributedDataParallel; the loop runs it under autocast and calls backward);
- validates (`evaluate(model, full=...)`: a dict whose first entry is "valid_loss"; `full` is
  the final evaluation of the best weights, else a quicker periodic estimate), when it has
  validation data (`validates`);
- may add its own figures to the logged lines (`log_metrics`, e.g. BERT's NSP loss and
  accuracy since the last line, then `clear_log_metrics`);
- says how many units (tokens, texts) a micro-batch holds, for the speed (`units_per_batch`).

An objective whose update autograd and an optimizer cannot express cheaply (word2vec's SGD,
pair by pair on a few rows: training/objectives/word2vec.py) may take the whole step itself:
`take_step(model, lr) -> loss` trains its next batch in place at the schedule's learning rate
and returns the loss; the loop calls it instead of `loss` and the optimizer (whose state it
still saves), with Ctrl-C held, and keeps everything else (schedule, checkpoints, resume,
metrics).

A new kind of training is a new objective, never a new loop.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class Objective(Protocol):
    validates: bool  # whether evaluate() has data to measure
    units_per_batch: int  # tokens (or texts) in one micro-batch, for the speed

    def loss(self, net: nn.Module) -> torch.Tensor:
        """The next micro-batch's loss under `net` (a scalar with a graph)."""
        ...

    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        """Validation metrics, "valid_loss" first; the model is left in the mode it was in."""
        ...

    def log_metrics(self) -> dict[str, float]:
        """Figures to add to the next logged line (since the last one); {} when none."""
        ...

    def clear_log_metrics(self) -> None:
        """Start collecting the figures of the next logged line."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The data position, random state and carried state (cheap: taken every step)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NoLogMetrics:
    """For objectives without figures of their own in the logged lines."""

    def log_metrics(self) -> dict[str, float]:
        return {}

    def clear_log_metrics(self) -> None:
        pass
