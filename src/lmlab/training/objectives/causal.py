"""Causal language modelling: maximum likelihood with teacher forcing.

The model reads tokens 0..T-1 of a window and is scored by cross-entropy on tokens 1..T.
Transformers and the MLP read independent random windows of the token stream (as nanoGPT does);
recurrent models read B parallel streams in order and carry their hidden state from one batch
to the next (truncated back-propagation through time).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.lm.neural.scoring import evaluate_loss
from lmlab.training.objective import NoLogMetrics


class Batches:
    """Training batches from a token stream, with a position that checkpoints can restore.

    Random windows (stateless models): B windows of T+1 tokens at random offsets.
    Streams (recurrent models): the stream cut into B rows read left to right, T at a time.
    """

    def __init__(self, ids: torch.Tensor, batch: int, context: int, streams: bool, seed: int):
        self.batch, self.context, self.streams = batch, context, streams
        if len(ids) < context + 1 or (streams and len(ids) // batch < context + 1):
            raise LmlabError(
                f"the training text has {len(ids)} tokens, too few for one batch of "
                f"{batch} x {context + 1}: give more text, or lower --batch-size / --context"
            )
        if streams:
            n = len(ids) // batch
            self.rows = ids[: n * batch].view(batch, n)  # row b is the b-th slice of the text
        self.ids = ids
        self.offset = 0  # streams: the next column to read
        self.generator = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[torch.Tensor, bool]:
        """(B, T+1) token ids, and whether the streams restarted (hidden state must reset)."""
        T = self.context
        if not self.streams:
            starts = torch.randint(len(self.ids) - T, (self.batch,), generator=self.generator)
            return self.ids[starts[:, None] + torch.arange(T + 1)].long(), False
        restart = self.offset + T + 1 > self.rows.shape[1]
        if restart:
            self.offset = 0
        window = self.rows[:, self.offset : self.offset + T + 1].long()
        self.offset += T
        return window, restart or self.offset == T

    def state_dict(self) -> dict:
        return {"offset": self.offset, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.offset = state["offset"]
        self.generator.set_state(state["generator"])


class CausalLM(NoLogMetrics):
    """Next-token cross-entropy of one of our models on windows (or streams) of a text."""

    def __init__(
        self,
        model: nn.Module,
        batches: Batches,
        valid_ids: torch.Tensor | None,
        device: torch.device,
        *,
        eval_windows: int,
    ) -> None:
        self.batches, self.valid_ids, self.device = batches, valid_ids, device
        self.model = model  # for its shape and new_cache (the net called may be a DDP wrapper)
        self.carries_state = bool(getattr(model, "carries_state", False))
        self.eval_windows = eval_windows  # windows per periodic validation estimate
        self.validates = valid_ids is not None
        self.units_per_batch = batches.batch * batches.context
        self.cache = None  # recurrent models: the hidden state carried across batches

    def loss(self, net: nn.Module) -> torch.Tensor:
        window, restart = self.batches.next()
        window = window.to(self.device)
        if self.carries_state:
            if restart or self.cache is None:
                self.cache = self.model.new_cache(self.batches.batch)
            logits = net(window[:, :-1], self.cache)
            self.cache.detach_()  # truncated BPTT: keep the state, cut the gradient
        else:
            logits = net(window[:, :-1])
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), window[:, 1:].flatten())

    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        windows = None if full else self.eval_windows
        loss = evaluate_loss(model, self.valid_ids, self.batches.context, windows=windows)
        return {"valid_loss": loss, "valid_perplexity": math.exp(loss)}

    def state_dict(self) -> dict:
        # The hidden state is copied shallowly: a step replaces its tensors, never writes into
        # them. The keys are those of checkpoints written before objectives existed.
        return {"batches": self.batches.state_dict(), "cache": copy.copy(self.cache)}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
        self.cache = state["cache"]


class AdapterCausalLM(CausalLM):
    """Next-token cross-entropy of a pretrained transformers causal LM (through its LoRA
    adapters): random windows, as for a Transformer of ours."""

    def loss(self, net: nn.Module) -> torch.Tensor:
        window, _ = self.batches.next()
        window = window.to(self.device)
        logits = net(input_ids=window[:, :-1]).logits
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), window[:, 1:].flatten())

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        """Non-overlapping windows of the validation text (the first few, when not `full`)."""
        ids, T = self.valid_ids, self.batches.context
        starts = torch.arange((len(ids) - 1) // T) * T
        if not full:
            starts = starts[: self.eval_windows]
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for first in range(0, len(starts), self.batches.batch):
            rows = starts[first : first + self.batches.batch]
            chunk = ids[rows[:, None] + torch.arange(T + 1)].long().to(self.device)
            logits = model(input_ids=chunk[:, :-1]).logits
            total += nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum"
            ).item()
            count += chunk[:, 1:].numel()
        model.train(was_training)
        loss = total / max(count, 1)
        return {"valid_loss": loss, "valid_perplexity": math.exp(loss)}
