"""The training loop: one for every model trained here, whatever its objective.

Each step sets the learning rate (warm-up then cosine, laid over the steps or over a time
budget, whichever ends first), runs `accumulate` micro-batches of the objective forward and
backward (under bfloat16 autocast when asked; with DistributedDataParallel, gradients are
averaged on the last one only), clips the gradient inside the fused update, and updates the
weights with Ctrl-C held, so that the update and the step count change together or not at all.
Then its bookkeeping: a metrics line every `log_every` steps; every `eval_every` steps and at
the end the objective's validation, early stopping and a checkpoint.

An objective may take the step itself (`take_step(model, lr)`: word2vec's pair-by-pair SGD);
the loop then sets its learning rate and holds Ctrl-C over the update, and keeps the rest.

Exact resume: a Ctrl-C inside a step rolls the objective's data position, carried state and
random state back to where the step began; a Ctrl-C during a step's bookkeeping leaves it
pending (`pending` holds its loss, and the early-stopping state is committed only at its end),
so --resume redoes it, and the resumed run's weights, metrics and early-stopping state are
those of a run never interrupted.

Library code does not print: progress goes to a callback (see progress.py for a bar).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import distributed as dist
from torch import nn

from lmlab.errors import LmlabError
from lmlab.training.checkpoint import CHECKPOINT, Checkpointer, Weights
from lmlab.training.early_stopping import EarlyStopping
from lmlab.training.metrics import MetricsLog
from lmlab.training.objective import Objective
from lmlab.training.optim import clipper, learning_rate
from lmlab.training.results import TrainConfig, TrainingInterrupted, TrainResult

Progress = Callable[[dict], None]


class Loop:
    """The optimisation loop over an objective, and its checkpointed state.

    Args:
        model: what trains (the bare module: saved, evaluated).
        objective: batches, loss and validation (objective.py).
        optimizer: over the model's trainable weights (fused, to clip in the update).
        config: steps are `total`; accumulate, grad_clip, dtype, eval_every, log_every,
            patience and the schedule's lr, min_lr and warmup are read here.
        total: optimizer steps.
        out: the folder of checkpoint/, metrics.jsonl, loss.png and the best weights.
        device: where the model is.
        weights: how the model's weights are saved (checkpoint.ModelWeights, TrainableWeights).
        best_file: the best (or, without validation, the last) weights, in `out`.
        net: what a step calls: the model, or its DistributedDataParallel wrapper.
        rank, world: this process and the number of processes (torchrun).
        resume: continue from `out`'s checkpoint.
        budget: seconds of training at most (None: no limit); the schedule ends with it.
        progress: called with {"step", "total"} at the start, {"step", "total", "loss",
            "rate"} after each step, {"valid_loss": best} after a validation, {"done": True}.
        on_step: called with the step number after each step's bookkeeping.
        checkpoint_every: steps between checkpoints (None: every validation, eval_every);
            one is always written at the end and on Ctrl-C.
        checkpoints: False for a run no one can resume (in a temporary folder): none written.
        plot: write loss.png (a run in a temporary folder has no one to show it to).
        ylabel: the loss axis of loss.png.
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig,
        *,
        total: int,
        out: Path,
        device: torch.device,
        weights: Weights,
        best_file: str = "model.safetensors",
        net: nn.Module | None = None,
        rank: int = 0,
        world: int = 1,
        resume: bool = False,
        budget: float | None = None,
        progress: Progress | None = None,
        on_step: Callable[[int], None] | None = None,
        checkpoint_every: int | None = None,
        checkpoints: bool = True,
        plot: bool = True,
        ylabel: str = "",
    ) -> None:
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.config, self.total, self.out, self.device = config, total, Path(out), device
        self.weights, self.best_path = weights, self.out / best_file
        self.net = net if net is not None else model
        self.rank, self.world, self.budget = rank, world, budget
        self.progress, self.on_step = progress, on_step
        self.checkpoint_every = checkpoint_every or config.eval_every
        self.checkpoints, self.plot = checkpoints, plot
        self.clip = clipper(optimizer) if config.grad_clip > 0 else None
        self.checkpointer = Checkpointer(self.out, weights, rank=rank, world=world)
        self.metrics = MetricsLog(self.out / "metrics.jsonl", write=rank == 0, ylabel=ylabel)
        self.stopping = EarlyStopping(config.patience, weights, self.best_path, write=rank == 0)
        self.step = 0
        self.spent = 0.0  # seconds of training in earlier sessions of this run (resumed)
        self.warmed: float | None = None  # the seconds() at which the warm-up ended
        self.started = time.perf_counter()
        # While a step is under way: where it started (the objective's state, the random
        # state), so that an interrupt inside it rolls back there (see run).
        self.step_start = None
        # After step N until its bookkeeping (metrics line, validation, checkpoint) is done:
        # its loss; a run interrupted then redoes that bookkeeping when resumed (see settle).
        self.pending: dict | None = None
        if resume:
            self.restore()
        elif self.checkpointer.exists():
            raise LmlabError(
                f"{out} already holds a training run: resume it, or use another folder"
            )
        elif rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)

    # -- checkpoints ----------------------------------------------------------------------

    def restore(self) -> None:
        state, mine = self.checkpointer.load()
        self.optimizer.load_state_dict(state["optimizer"])
        self.objective.load_state_dict(mine)
        torch.set_rng_state(mine["torch_rng"])
        self.step, self.pending = state["step"], state.get("pending")
        self.stopping.best, self.stopping.bad_evals = state["best"], state["bad_evals"]
        self.spent = state.get("seconds", 0.0)
        self.warmed = state.get("warmed_at", 0.0 if self.step >= self.config.warmup else None)
        # The metrics up to the checkpoint (none yet when the run stopped before its first
        # line); a pending step's lines are written again when its bookkeeping is redone.
        self.metrics.restore(self.step - 1 if self.pending is not None else self.step)

    def checkpoint(self) -> None:
        """Write checkpoint/ (every process's data position and random state: exact resume)."""
        if not self.checkpoints:
            return
        mine = {**self.objective.state_dict(), "torch_rng": torch.get_rng_state()}
        state = {"step": self.step, "best": self.stopping.best,
                 "bad_evals": self.stopping.bad_evals, "pending": self.pending,
                 "optimizer": self.optimizer.state_dict(), "seconds": self.seconds(),
                 "warmed_at": self.warmed}  # fmt: skip
        self.checkpointer.save(state, mine)
        if self.rank == 0 and (not self.best_path.exists() or math.isinf(self.stopping.best)):
            self.weights.save(self.best_path)  # no validation (yet): the last weights

    # -- a step -----------------------------------------------------------------------------

    def train_step(self) -> float:
        """One optimizer step over `accumulate` micro-batches; the mean loss."""
        config, objective, net = self.config, self.objective, self.net
        self.step_start = (objective.state_dict(), torch.get_rng_state())
        lr = learning_rate(self.schedule_step(), config, self.total)
        for group in self.optimizer.param_groups:  # a group may move slower (lr_scale)
            group["lr"] = lr * group.get("lr_scale", 1.0)
        take_step = getattr(objective, "take_step", None)
        if take_step is not None:  # the objective takes the step itself (word2vec's pair SGD)
            with _ctrl_c_held():  # the update and the step count change together, or neither
                total_loss = take_step(self.model, lr)
                self.step, self.step_start = self.step + 1, None
                self.pending = {"loss": total_loss}
            return total_loss
        accumulate, bfloat16 = config.accumulate, config.dtype == "bfloat16"
        total_loss = 0.0
        for micro in range(accumulate):
            # DDP averages gradients at backward(); only the last micro-batch needs to.
            syncing = micro == accumulate - 1 or self.world == 1
            with contextlib.nullcontext() if syncing else net.no_sync():
                with torch.autocast(self.device.type, torch.bfloat16, enabled=bfloat16):
                    loss = objective.loss(net)
                (loss / accumulate).backward()
                total_loss += loss.item() / accumulate
        if self.world > 1:  # the loss of the whole step, over every process's batches
            mean = torch.tensor([total_loss], dtype=torch.float64)
            dist.all_reduce(mean)
            total_loss = mean.item() / self.world
        if not math.isfinite(total_loss):
            raise LmlabError(
                f"the loss became {total_loss} at step {self.step + 1}; the last good checkpoint "
                f"is kept in {self.out / CHECKPOINT}: lower the learning rate and train again"
            )
        if self.clip is not None:
            self.clip(self.optimizer, self.model.parameters(), config.grad_clip)
        with _ctrl_c_held():  # the update and the step count change together, or neither
            self.optimizer.step()
            self.step, self.step_start, self.pending = self.step + 1, None, {"loss": total_loss}
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss

    def schedule_step(self) -> int:
        """Where the schedule is: the step; with a time budget, after the warm-up (counted in
        steps, always), the step or the share of the time left after the warm-up that is
        spent, whichever is further on: the decay runs over the whole of that time."""
        warmup = self.config.warmup
        if self.budget is None or self.step < warmup:
            return self.step
        now = self.seconds()
        if self.warmed is None:
            self.warmed = now
        left = self.budget - self.warmed
        share = 1.0 if left <= 0 else min(1.0, (now - self.warmed) / left)
        return max(self.step, warmup + round(share * (self.total - warmup)))

    def seconds(self) -> float:
        """Seconds of training in this run, earlier sessions included."""
        return self.spent + time.perf_counter() - self.started

    def settle(self) -> None:
        """The bookkeeping of the step just taken: its metrics line every log_every steps, and
        every eval_every steps (and at the last) the validation, the best weights and a
        checkpoint.

        Until it ends, `pending` holds the step's loss, and the early-stopping state and the
        objective's logged figures keep their values from before it; a checkpoint written by
        an interrupt in the meantime therefore makes --resume redo it all.
        """
        config, step, objective = self.config, self.step, self.objective
        last = step == self.total or self.out_of_time()
        logged = step % config.log_every == 0 or last
        if logged:
            lr = self.optimizer.param_groups[0]["lr"]
            record = {"step": step, "loss": self.pending["loss"], "lr": lr,
                      "tokens_per_s": self.pending.get("tokens_per_s", 0.0)}  # fmt: skip
            record.update(objective.log_metrics())
            self.metrics.log(record)
        evaluated = step % config.eval_every == 0 or last
        best, bad_evals = self.stopping.best, self.stopping.bad_evals
        if evaluated and objective.validates:
            record = {"step": step, **objective.evaluate(self.model, full=False)}
            self.metrics.log(record)
            best, bad_evals = self.stopping.judge(record["valid_loss"])
            if self.progress is not None:
                self.progress({"valid_loss": best})
        with _ctrl_c_held():  # an interrupt finds the bookkeeping done entirely or not at all
            self.stopping.best, self.stopping.bad_evals, self.pending = best, bad_evals, None
            if logged:
                objective.clear_log_metrics()
        if step % self.checkpoint_every == 0 or last or self.exhausted():
            self.checkpoint()

    def out_of_time(self) -> bool:
        return self.budget is not None and self.seconds() >= self.budget

    def exhausted(self) -> bool:
        """Whether training is over: every step taken, the time budget spent, or early
        stopping's patience used up."""
        return self.step >= self.total or self.stopping.exhausted() or self.out_of_time()

    def complete(self) -> bool:
        """Whether the run has nothing left to do: training over and, with validation, the
        final evaluation of the best weights logged."""
        if self.pending is not None or not self.exhausted():
            return False
        return not self.objective.validates or any(r.get("final") for r in self.metrics.history)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train until the steps, the budget or the patience run out; then the final
        validation of the best weights, and loss.png."""
        if self.complete():  # a resumed run that had finished: nothing to do
            final = next((r for r in reversed(self.metrics.history) if r.get("final")), None)
            return self.result(final, first_step=self.step, already_complete=True)
        units = self.objective.units_per_batch * self.config.accumulate * self.world
        progress = self.progress if self.rank == 0 else None
        if progress is not None:
            progress({"step": self.step, "total": self.total})
        self.started = start = time.perf_counter()
        start_step = self.step
        loss = self.pending["loss"] if self.pending is not None else math.nan
        self.model.train()
        try:
            if self.pending is not None:  # resumed inside a step's bookkeeping: finish it
                self.settle()
            while not self.exhausted():
                loss = self.train_step()
                rate = (self.step - start_step) * units / (time.perf_counter() - start)
                self.pending["tokens_per_s"] = rate
                if progress is not None:
                    progress({"step": self.step, "total": self.total, "loss": loss, "rate": rate})
                self.settle()
                if self.on_step is not None:
                    self.on_step(self.step)
        except KeyboardInterrupt:
            if self.step_start is not None:  # interrupted inside a step: forget that step
                objective_state, rng = self.step_start
                self.objective.load_state_dict(objective_state)
                torch.set_rng_state(rng)
                self.optimizer.zero_grad(set_to_none=True)
                self.step_start = None
            self.checkpoint()
            if progress is not None:
                progress({"done": True})
            if self.plot:
                self.metrics.plot(self.out / "loss.png")
            raise TrainingInterrupted(self.step, self.out) from None
        if progress is not None:
            progress({"done": True})
        seconds = time.perf_counter() - start
        rate = (self.step - start_step) * units / max(seconds, 1e-9)
        try:  # the last step's checkpoint is written: an interrupt here leaves it as it is
            final = self.finish()
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.step, self.out) from None
        return self.result(final, first_step=start_step, loss=loss, rate=rate, seconds=seconds)

    def finish(self) -> dict | None:
        """After training: the full validation of the best weights (logged), and loss.png."""
        final = None
        if self.world > 1:
            dist.barrier()  # process 0 has written the weights
        if self.objective.validates:
            self.weights.load(self.best_path)  # the best one
            final = {"step": self.step, **self.objective.evaluate(self.model, full=True),
                     "final": True}  # fmt: skip
            self.metrics.log(final)
        if self.plot:
            self.metrics.plot(self.out / "loss.png")
        return final

    def result(
        self, final, *, first_step, loss=None, rate=0.0, seconds=0.0, already_complete=False
    ) -> TrainResult:
        """The TrainResult of this call; `loss` None: the last logged one (a finished run)."""
        if loss is None:
            loss = self.metrics.last("loss", math.nan)
        return TrainResult(
            str(self.out),
            self.step,
            loss,
            final["valid_loss"] if final else None,
            final.get("valid_perplexity") if final else None,
            rate,
            seconds,
            stopped_early=self.step < self.total,
            first_step=first_step,
            already_complete=already_complete,
            history=self.metrics.history,
        )


@contextlib.contextmanager
def _ctrl_c_held():
    """Hold Ctrl-C (SIGINT) until the block ends, then deliver it: for the few statements that
    must run entirely or not at all. Only the main thread gets signals; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda *args: held.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        signal.raise_signal(signal.SIGINT)  # now to the previous handler (KeyboardInterrupt)
