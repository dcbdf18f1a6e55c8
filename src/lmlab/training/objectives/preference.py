"""Learning from preferences between two answers to a prompt.

DPO (Rafailov et al. 2023): the policy's implicit reward of an answer is
beta * (log pi(answer | prompt) - log pi_ref(answer | prompt)), and the loss is
-log sigmoid(reward(chosen) - reward(rejected)). With LoRA the reference is the same model with
its adapters switched off (no second copy); with full training, a frozen copy of the base.

Reward model (Bradley-Terry, as in RLHF): a scalar score of prompt + answer, trained by
-log sigmoid(score(chosen) - score(rejected)).

Both log, per line and on the held-out pairs: the loss, the mean rewards of chosen and rejected
answers, their margin, and the preference accuracy (how often chosen scores above rejected).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lmlab.training.objectives.sft import LengthBatches, pad


class _Pairs:
    """Batches of preference pairs of similar lengths, one forward pass over chosen and
    rejected together, and the running figures of the logged line."""

    def __init__(self, model, pairs, valid_pairs, batch: int, pad_id: int, device, *, seed: int,
                 eval_batches: int) -> None:  # fmt: skip
        self.model, self.pairs, self.valid_pairs = model, pairs, valid_pairs or []
        self.pad_id, self.device, self.eval_batches = pad_id, device, eval_batches
        self.batches = LengthBatches([_length(p) for p in pairs], batch, seed)
        self.validates = bool(self.valid_pairs)
        self.units_per_batch = batch  # pairs
        order = sorted(range(len(self.valid_pairs)), key=lambda i: _length(self.valid_pairs[i]))
        self.valid_order = [order[i : i + batch] for i in range(0, len(order), batch)]
        self.clear_log_metrics()

    def tensors(self, pairs: Sequence) -> tuple:
        """(ids, attention, mask) of the chosen answers then the rejected ones: (2B, T)."""
        return pad([p[0] for p in pairs] + [p[1] for p in pairs], self.pad_id, self.device)

    def rewards(self, net: nn.Module, tensors: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        """The chosen and rejected answers' rewards (B each)."""
        raise NotImplementedError

    def loss(self, net: nn.Module) -> torch.Tensor:
        pairs = [self.pairs[i] for i in self.batches.next()]
        chosen, rejected = self.rewards(net, self.tensors(pairs))
        loss = -nn.functional.logsigmoid(chosen - rejected).mean()
        self._add(self.running, loss, chosen.detach(), rejected.detach())
        return loss

    @staticmethod
    def _add(sums: dict, loss, chosen, rejected) -> None:
        n = len(chosen)
        sums["loss"] += loss.item() * n
        sums["chosen"] += chosen.sum().item()
        sums["rejected"] += rejected.sum().item()
        sums["accuracy"] += (chosen > rejected).sum().item()
        sums["n"] += n

    @staticmethod
    def _means(sums: dict, prefix: str) -> dict[str, float]:
        n = max(sums["n"], 1)
        chosen, rejected = sums["chosen"] / n, sums["rejected"] / n
        return {f"{prefix}rewards_chosen": chosen, f"{prefix}rewards_rejected": rejected,
                f"{prefix}reward_margin": chosen - rejected,
                f"{prefix}accuracy": sums["accuracy"] / n}  # fmt: skip

    def log_metrics(self) -> dict[str, float]:
        return self._means(self.running, "") if self.running["n"] else {}

    def clear_log_metrics(self) -> None:
        self.running = dict.fromkeys(("loss", "chosen", "rejected", "accuracy", "n"), 0.0)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        was_training = model.training
        model.eval()
        sums = dict.fromkeys(("loss", "chosen", "rejected", "accuracy", "n"), 0.0)
        for rows in self.valid_order if full else self.valid_order[: self.eval_batches]:
            tensors = self.tensors([self.valid_pairs[i] for i in rows])
            chosen, rejected = self.rewards(model, tensors)
            losses = -nn.functional.logsigmoid(chosen - rejected)
            self._add(sums, losses.mean(), chosen, rejected)
        model.train(was_training)
        return {"valid_loss": sums["loss"] / max(sums["n"], 1), **self._means(sums, "valid_")}

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict(), "running": dict(self.running)}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
        self.running = dict(state["running"])


def _length(pair) -> int:
    return max(len(pair[0].ids), len(pair[1].ids))


class DPO(_Pairs):
    """Direct preference optimisation of a causal LM against its reference.

    `reference` computes the reference model's per-token log-probabilities of the same
    tensors (adapters switched off, or a frozen copy)."""

    def __init__(self, model, pairs, valid_pairs, batch, pad_id, device, *, beta: float,
                 reference: Callable[[tuple], torch.Tensor], seed: int,
                 eval_batches: int) -> None:  # fmt: skip
        super().__init__(model, pairs, valid_pairs, batch, pad_id, device, seed=seed,
                         eval_batches=eval_batches)  # fmt: skip
        self.beta, self.reference = beta, reference

    def rewards(self, net: nn.Module, tensors: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        from lmlab.posttrain.model import row_sums, token_logps

        mask = tensors[2]
        policy = row_sums(token_logps(net, *tensors), mask)
        with torch.no_grad():
            reference = row_sums(self.reference(tensors), mask)
        rewards = self.beta * (policy - reference)
        B = len(rewards) // 2
        return rewards[:B], rewards[B:]


class BradleyTerry(_Pairs):
    """A reward model's scores of the chosen and rejected answers (net(ids, attention))."""

    def rewards(self, net: nn.Module, tensors: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        ids, attention, _ = tensors
        scores = net(ids, attention)
        B = len(scores) // 2
        return scores[:B], scores[B:]
