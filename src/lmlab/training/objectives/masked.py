"""Masked language modelling (BERT): predict the tokens the corruption chose, optionally with
next-sentence prediction, whose loss is added (BERT's pre-training loss) and whose loss and
accuracy are logged."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.lm.neural.scoring import masked_forward, masked_metrics
from lmlab.training.objectives.causal import Batches


class MaskedLM:
    """MLM (+ NSP) loss on random windows of a text."""

    def __init__(
        self,
        batches: Batches,
        valid_ids: torch.Tensor | None,
        device: torch.device,
        *,
        corrupt: Callable,
        pairs: Callable | None,
        eval_windows: int,
    ) -> None:
        self.batches, self.valid_ids, self.device = batches, valid_ids, device
        self.corrupt, self.pairs, self.eval_windows = corrupt, pairs, eval_windows
        self.validates = valid_ids is not None
        self.units_per_batch = batches.batch * batches.context
        self.nsp: list[tuple[float, float]] = []  # NSP loss and accuracy since the last log

    def loss(self, net: nn.Module) -> torch.Tensor:
        window, _ = self.batches.next()
        logits, targets, nsp_logits, is_next = masked_forward(
            net, window[:, :-1], self.batches.ids, self.corrupt, self.pairs,
            self.batches.generator, self.device,
        )  # fmt: skip
        loss = nn.functional.cross_entropy(logits.float(), targets)
        if nsp_logits is not None:  # BERT's pre-training loss: MLM + NSP
            nsp_loss = nn.functional.cross_entropy(nsp_logits.float(), is_next)
            right = (nsp_logits.argmax(-1) == is_next).float().mean().item()
            self.nsp.append((nsp_loss.item(), right))
            loss = loss + nsp_loss
        return loss

    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        windows = None if full else self.eval_windows
        loss, extra = masked_metrics(model, self.valid_ids, self.batches.context, self.corrupt,
                                     pairs=self.pairs, windows=windows)  # fmt: skip
        record = {"valid_loss": loss, "valid_perplexity": math.exp(loss)}
        record.update({f"valid_{k}": v for k, v in extra.items()})
        return record

    def log_metrics(self) -> dict[str, float]:
        if not self.nsp:  # NSP models: the mean NSP loss and accuracy since the last log
            return {}
        losses, rights = zip(*self.nsp, strict=True)
        return {"nsp_loss": sum(losses) / len(losses), "nsp_accuracy": sum(rights) / len(rights)}

    def clear_log_metrics(self) -> None:
        self.nsp = []

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict(), "cache": None, "nsp": list(self.nsp)}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])
        self.nsp = list(state.get("nsp", []))


def masker(tokenizer, config) -> Callable:
    """BERT's corruption for this tokenizer: needs a [MASK] token."""
    from lmlab.lm.neural.bert import mask_tokens

    mask_id = next((i for i in tokenizer.special_ids if tokenizer.id_to_token(i) == "[MASK]"), None)
    if mask_id is None:
        raise LmlabError("a masked LM needs a tokenizer with a [MASK] token: --tokenizer wordpiece")
    specials = torch.tensor(sorted(tokenizer.special_ids))

    def corrupt(ids: torch.Tensor, generator: torch.Generator):
        return mask_tokens(
            ids,
            mask_id=mask_id,
            vocab_size=config.vocab_size,
            special_ids=specials,
            generator=generator,
            mask_prob=config.mask_prob,
        )

    return corrupt


def pairer(tokenizer) -> Callable:
    """Next-sentence pairs for this tokenizer: needs [CLS] and [SEP] tokens."""
    from lmlab.lm.neural.bert import next_sentence_pairs

    special = {tokenizer.id_to_token(i): i for i in tokenizer.special_ids}
    if "[CLS]" not in special or "[SEP]" not in special:
        raise LmlabError("next-sentence prediction needs [CLS] and [SEP]: --tokenizer wordpiece")

    def pairs(windows: torch.Tensor, stream: torch.Tensor, generator: torch.Generator):
        return next_sentence_pairs(
            windows, stream, cls_id=special["[CLS]"], sep_id=special["[SEP]"], generator=generator
        )

    return pairs
