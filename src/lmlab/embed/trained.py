"""Encoders from models trained here (`lmlab train KIND`): mean-pooled hidden states.

A text's vector is the mean, over its tokens, of the vectors the model computes for them:
  bert:            the last layer (after its final LayerNorm), [CLS] and [SEP] included, as
                   MaskedLM.encode; padding is masked out of the attention;
  gpt:             the final LayerNorm's output, what the output layer reads;
  rnn, lstm, gru:  the top recurrent layer's outputs;
  mlp:             the tanh hidden layer of Bengio's model (its size is n_hidden).
Causal models read the text after an end-of-text token, as every document but the first
starts in training, so an empty text has a defined vector (that of end-of-text alone). They
read left to right, so right padding changes nothing before it and is simply left out of the
mean. Texts longer than a Transformer's context are cut to it (and counted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmlab.embed.base import Encoded, Encoder
from lmlab.text.tokenizer import Tokenizer


class TrainedEncoder(Encoder):
    """A run's model pooled into text vectors.

    Args:
        model: a model of lmlab.lm.neural with `hidden_states`.
        tokenizer: the run's tokenizer.
        name: what to call the encoder (the run folder's name).
        masked: a BERT run (bidirectional; its hidden states take a padding mask).

    Example:
        >>> enc = lmlab.load_encoder("runs/bert")        # any run of lmlab train
        >>> enc.encode(["the cat sat", "the dog lay"]).shape
        (2, 256)
    """

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, *, name: str, masked: bool) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.masked = masked
        self.max_length = model.config.context if model.bounded_context else None
        # Causal models: what comes before a text (end-of-text), as in training.
        self._prefix = [] if masked or not tokenizer.eos_ids else [min(tokenizer.eos_ids)]
        with torch.inference_mode():
            self.dimension = int(self._states(torch.zeros(1, 1, dtype=torch.long), None).shape[-1])

    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        if self.masked:
            ids = [self.tokenizer.encode(t, add_special_tokens=True) for t in texts]
        else:
            ids = [self._prefix + self.tokenizer.encode(t) for t in texts]
        limit = self.max_length or max(map(len, ids))
        truncated = sum(1 for row in ids if len(row) > limit)
        return self._pool_all([row[:limit] for row in ids], batch_size, truncated)

    @torch.inference_mode()
    def _pool_batch(self, rows: list[list[int]]) -> np.ndarray:
        width = max(1, max(map(len, rows)))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        keep = torch.zeros(len(rows), width, dtype=torch.bool)  # False at padding
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            keep[r, : len(row)] = True
        device = next(self.model.parameters()).device
        states = self._states(ids.to(device), keep.to(device) if self.masked else None)
        w = keep.to(states.device, states.dtype)[..., None]  # (B, T, 1)
        # Mean over real tokens; a row with no tokens at all stays zero.
        pooled = (states * w).sum(1) / w.sum(1).clamp(min=1)
        return pooled.float().cpu().numpy()

    def _states(self, ids: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """Hidden states (B, T, C) of token ids (B, T)."""
        if self.masked:
            return self.model.hidden_states(ids, keep)
        return self.model.hidden_states(ids)


def load_run_encoder(folder: str | Path, **_options) -> TrainedEncoder:
    """The encoder of a run directory of `lmlab train` (bert, gpt, rnn, lstm, gru, mlp).

    Example:
        >>> enc = load_run_encoder("runs/shakespeare")   # or lmlab.load_encoder(...)
    """
    from lmlab.lm.neural.run import load_masked_lm, load_run, read_run

    folder = Path(folder)
    if read_run(folder).get("kind") == "bert":
        mlm = load_masked_lm(folder)
        return TrainedEncoder(mlm.model, mlm.tokenizer, name=mlm.name, masked=True)
    lm = load_run(folder)
    return TrainedEncoder(lm.model, lm.tokenizer, name=lm.name, masked=False)
