"""How well a model of ours predicts a text: the cross-entropy the trainer validates with and
`NeuralLM.evaluate_file` reports, and the corpus encoding both share.

Kept apart from the trainer so that loading and scoring a run never imports the training loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from lmlab.lm.neural.bert import IGNORE


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    ids: torch.Tensor,
    context: int,
    *,
    batch: int = 32,
    windows: int | None = None,
    corrupt: Callable | None = None,
) -> float:
    """Mean cross-entropy (nats/token) of `ids` under `model`.

    Stateless models read non-overlapping windows of `context` tokens (the first `windows` of
    them, when given); recurrent models read the text as one stream (its first `windows` x
    `context` tokens, when given: the periodic estimate during training). Masked models
    (`corrupt` given) are scored on the tokens `corrupt` chose, with a fixed random seed.
    """
    if corrupt is not None:
        return masked_metrics(model, ids, context, corrupt, batch=batch, windows=windows)[0]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    if model.carries_state:
        cache = model.new_cache(1)
        if windows is not None:
            ids = ids[: windows * context + 1]
        for start in range(0, len(ids) - 1, context):
            chunk = ids[start : start + context + 1].long().to(device)[None]
            logits = model(chunk[:, :-1], cache)
            total += nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum"
            ).item()
            count += chunk.shape[1] - 1
    else:
        n = (len(ids) - 1) // context
        starts = torch.arange(n) * context
        if windows is not None:
            starts = starts[:windows]
        for first in range(0, len(starts), batch):
            rows = starts[first : first + batch]
            chunk = ids[rows[:, None] + torch.arange(context + 1)].long().to(device)
            logits = model(chunk[:, :-1])
            total += nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="sum"
            ).item()
            count += chunk[:, 1:].numel()
    model.train(was_training)
    return total / max(count, 1)


def masked_metrics(
    model: nn.Module,
    ids: torch.Tensor,
    context: int,
    corrupt: Callable,
    *,
    pairs: Callable | None = None,
    batch: int = 32,
    windows: int | None = None,
) -> tuple[float, dict]:
    """A masked LM's loss on the tokens `corrupt` chose, and with `pairs` (NSP models) the
    next-sentence loss and accuracy: (mlm loss, {"nsp_loss", "nsp_accuracy"} or {}).

    Non-overlapping windows of `context` tokens, with fixed random seeds (the same masks and
    pairs at every evaluation).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(0)
    starts = (torch.arange((len(ids) - 1) // context) * context)[:windows]
    total = count = nsp_total = nsp_right = 0.0
    with torch.no_grad():
        for first in range(0, len(starts), batch):
            rows = starts[first : first + batch]
            window = ids[rows[:, None] + torch.arange(context)].long()
            mlm_logits, labels, nsp_logits, is_next = masked_forward(
                model, window, ids, corrupt, pairs, generator, device
            )
            total += nn.functional.cross_entropy(mlm_logits.float(), labels, reduction="sum").item()
            count += len(labels)
            if pairs is not None:
                nsp_total += nn.functional.cross_entropy(
                    nsp_logits.float(), is_next, reduction="sum"
                ).item()
                nsp_right += int((nsp_logits.argmax(-1) == is_next).sum())
    model.train(was_training)
    extra = {}
    if pairs is not None:
        extra = {"nsp_loss": nsp_total / len(starts), "nsp_accuracy": nsp_right / len(starts)}
    return total / max(count, 1), extra


def masked_forward(net, window, stream, corrupt, pairs, generator, device):
    """A masked batch through `net`: (MLM logits (N, V) and labels (N,) of the N predicted
    tokens, NSP logits or None, is_next or None).

    With `pairs` each window first becomes [CLS] A [SEP] B [SEP] (next_sentence_pairs)."""
    segments = is_next = nsp_logits = None
    if pairs is not None:
        window, segments, is_next = pairs(window, stream, generator)
        segments, is_next = segments.to(device), is_next.to(device)
    inputs, labels = corrupt(window, generator)
    labels = labels.to(device)
    at = labels != IGNORE
    if pairs is None:
        logits = net(inputs.to(device), at=at)
    else:
        logits, nsp_logits = net(inputs.to(device), None, segments, nsp=True, at=at)
    return logits, labels[at], nsp_logits, is_next


def encode_corpus(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Token ids of the texts, joined by the end-of-text token, as an int32 tensor.

    Lines are encoded in parallel. The tokenizers trained here never merge across a line end, so
    this is their `encode` of the whole text; a foreign token spanning a line end is split there.
    """
    eos = min(tokenizer.eos_ids) if tokenizer.eos_ids else None
    ids: list[int] = []
    for i, text in enumerate(texts):
        if i and eos is not None:
            ids.append(eos)
        for line in tokenizer.encode_batch(text.splitlines(keepends=True)):
            ids.extend(line)
    return torch.tensor(ids, dtype=torch.int32)
