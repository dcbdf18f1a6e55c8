"""Checkpoints: the weights, the optimizer, every process's data position and random state,
written as a whole (a crash leaves the previous one intact), and read back for an exact resume.

  checkpoint/model.safetensors   the weights (for adapters and heads: the trainable ones)
  checkpoint/state.pt            step, early-stopping state, the pending step, the optimizer,
                                 and per process the objective's state and torch's generator

Checkpoints written before training had objectives (no "format" key) have the same layout, with
BERT's NSP figures at the top level; they load as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import distributed as dist
from torch import nn

from lmlab.errors import LmlabError
from lmlab.home import atomic_dir, atomic_file

CHECKPOINT = "checkpoint"
STATE_FILE = "state.pt"
WEIGHTS_FILE = "model.safetensors"
FORMAT = 2
REQUIRED = ("step", "best", "bad_evals", "optimizer", "ranks")


class Weights(Protocol):
    """Saves and loads the weights of a model being trained."""

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...


class ModelWeights:
    """The whole model in one safetensors file (tied weights once): a run's model.safetensors."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def save(self, path: Path) -> None:
        from lmlab.lm.neural.run import save_weights

        save_weights(self.model, path)

    def load(self, path: Path) -> None:
        from lmlab.lm.neural.run import load_weights

        load_weights(self.model, path)


class TrainableWeights:
    """Only the weights that train (LoRA adapters, a classifier head, ...): the rest never
    changes, so a checkpoint of a 135M model with adapters takes megabytes, not half a GB."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        params = dict(self.model.named_parameters())
        state = {n: params[n].detach().contiguous().cpu() for n in self.names}
        with atomic_file(path) as tmp:
            save_file(state, str(tmp))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
            missing = set(self.names) - set(state)
            if missing or set(state) - set(self.names):
                raise ValueError(f"{len(missing)} weights missing, or others than this model's")
            self.model.load_state_dict(state, strict=False)
        except Exception as e:  # a truncated file, or another model's weights
            raise LmlabError(f"cannot load weights {path}: {str(e).splitlines()[0]}") from None


class Checkpointer:
    """checkpoint/ of a run: save on every process (process 0 writes), load for --resume."""

    def __init__(self, out: Path, weights: Weights, *, rank: int = 0, world: int = 1) -> None:
        self.folder, self.weights, self.rank, self.world = out / CHECKPOINT, weights, rank, world

    def exists(self) -> bool:
        return (self.folder / STATE_FILE).is_file()

    def save(self, state: dict, mine: dict) -> None:
        """`state`: what every process shares; `mine`: this process's own state."""
        ranks = [mine]
        if self.world > 1:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, mine)
        if self.rank != 0:
            return
        with atomic_dir(self.folder) as tmp:
            self.weights.save(tmp / WEIGHTS_FILE)
            torch.save({"format": FORMAT, **state, "ranks": ranks}, tmp / STATE_FILE)

    def load(self) -> tuple[dict, dict]:
        """Load the weights; (the shared state, this process's state)."""
        if not self.exists():
            raise LmlabError(f"nothing to resume in {self.folder.parent}: it has no checkpoint")
        try:
            state = torch.load(self.folder / STATE_FILE, weights_only=False)
        except Exception as e:  # a file from another torch, or damaged
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise LmlabError(f"cannot read the checkpoint in {self.folder}: {first}") from None
        missing = [k for k in REQUIRED if k not in state]
        if missing or state.get("format", 1) > FORMAT:
            lacking = f", lacking {', '.join(missing)}" if missing else ""
            raise LmlabError(
                f"the checkpoint in {self.folder} was written by another version of lmlab "
                f"(format {state.get('format', 1)}{lacking}): train again without --resume"
            )
        if len(state["ranks"]) != self.world:
            raise LmlabError(
                f"{self.folder.parent} was trained by {len(state['ranks'])} process(es): "
                "resume with as many"
            )
        self.weights.load(self.folder / WEIGHTS_FILE)
        mine = dict(state["ranks"][self.rank])
        if "format" not in state and "nsp" in state:  # format 1 kept NSP figures at the top
            mine.setdefault("nsp", state["nsp"] if self.rank == 0 else [])
        return state, mine


def resumable_run(out: Path, kind: str, options: dict, resume: bool) -> dict | None:
    """The run in `out` to resume (its lmlab.json), after checking it has a checkpoint, is of
    `kind` and was made with the same `options`; None for a new run, which must not overwrite
    one in training. One-line errors otherwise."""
    from lmlab.runs import read_run

    if not resume:
        if (out / CHECKPOINT).exists():
            raise LmlabError(f"{out} already holds a training run: pass --resume or another --out")
        return None
    if not (out / CHECKPOINT).exists():
        raise LmlabError(f"nothing to resume in {out}: it has no checkpoint")
    run = read_run(out)
    if run.get("kind") != kind:
        raise LmlabError(f"{out} holds a {run.get('kind')!r} run, not {kind!r}: cannot resume")
    changed = sorted(k for k, v in options.items() if run["train"].get(k) != v)
    if changed:
        raise LmlabError(
            f"--resume needs the options of the run in {out}; these differ: " + ", ".join(changed)
        )
    return run
