"""Word2vec's objective (Mikolov et al. 2013): a word and its context close, noise words apart.

A micro-batch is a block of `batch_words` corpus positions: this epoch's subsampled words in it
are the centres, each with a window drawn from 1..`window` (word2vec's reduced window) that
stops at its line. Skip-gram scores each context word's input vector against the centre's
output vector and `negative` noise words' (drawn once per centre, from count**0.75); CBOW
scores the mean of the context's input vectors the same way. The loss is the sum over the
block of -log sigmoid(positive) - sum log sigmoid(-negative): plain SGD on it with word2vec's
learning rate is word2vec's update, taken for the whole block at once.

The random draws of block b of epoch e come from a generator seeded with (seed, e, b): the data
position (epoch, block) is the whole state, and a resumed run draws what it would have drawn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lmlab.training.objective import NoLogMetrics
from lmlab.wordvec.corpus import Corpus, keep_probabilities, noise_table


class WordVectorsNet(nn.Module):
    """The two matrices: input vectors (the word vectors kept) and output vectors."""

    def __init__(self, vocab_size: int, dim: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)  # word2vec's start: small input, zero output
        self.input = nn.Parameter((torch.rand(vocab_size, dim, generator=g) - 0.5) / dim)
        self.output = nn.Parameter(torch.zeros(vocab_size, dim))


class WordPairs(NoLogMetrics):
    """Blocks of (centre, window, noise words) over the corpus, epoch after epoch."""

    validates = False

    def __init__(
        self,
        corpus: Corpus,
        *,
        window: int = 5,
        negative: int = 5,
        sample: float = 1e-3,
        batch_words: int = 1000,
        cbow: bool = False,
        seed: int = 0,
    ) -> None:
        self.ids, self.lines = corpus.ids, corpus.lines
        self.window, self.negative, self.cbow, self.seed = window, negative, cbow, seed
        self.batch_words = batch_words
        self.keep = keep_probabilities(corpus.counts, sample)
        self.noise = noise_table(corpus.counts)
        self.blocks = -(-len(self.ids) // batch_words)  # per epoch
        self.units_per_batch = batch_words
        self.offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
        self.epoch, self.block, self.kept = 0, 0, None
        # label signs: the centre (+) then the noise words (-)
        self.signs = torch.tensor([1.0] + [-1.0] * negative)

    # -- data -------------------------------------------------------------------------------

    def subsample(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This epoch's kept words, their lines, and where each block starts among them."""
        rng = np.random.default_rng([self.seed, epoch])
        kept = rng.random(len(self.ids)) < self.keep[self.ids]
        before = np.concatenate([[0], np.cumsum(kept)])
        starts = np.minimum(np.arange(self.blocks + 1) * self.batch_words, len(self.ids))
        return self.ids[kept], self.lines[kept], before[starts]

    def next_block(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Context ids (n, 2*window), their mask (n, 2*window), centre + noise ids (n, 1+k)."""
        if self.kept is None or self.kept[0] != self.epoch:
            self.kept = (self.epoch, *self.subsample(self.epoch))
        _, ids, lines, starts = self.kept
        rng = np.random.default_rng([self.seed, self.epoch, self.block])
        centres = np.arange(starts[self.block], starts[self.block + 1])
        reach = rng.integers(1, self.window + 1, size=len(centres))
        at = centres[:, None] + self.offsets[None, :]
        inside = (at >= 0) & (at < len(ids))
        at = np.clip(at, 0, max(len(ids) - 1, 0))
        mask = inside & (np.abs(self.offsets)[None, :] <= reach[:, None])
        mask &= lines[at] == lines[centres][:, None]
        targets = np.empty((len(centres), 1 + self.negative), np.int64)
        targets[:, 0] = ids[centres]
        targets[:, 1:] = self.noise[rng.integers(0, len(self.noise), (len(centres), self.negative))]
        self.block += 1
        if self.block == self.blocks:
            self.epoch, self.block = self.epoch + 1, 0
        return (
            torch.from_numpy(ids[at]),
            torch.from_numpy(mask.astype(np.float32)),
            torch.from_numpy(targets),
        )

    # -- the objective ----------------------------------------------------------------------

    def loss(self, net: nn.Module) -> torch.Tensor:
        context, mask, targets = self.next_block()
        out = F.embedding(targets, net.output, sparse=True)  # (n, 1+k, d)
        if self.cbow:  # the mean of the context's input vectors predicts the centre
            inputs = (F.embedding(context, net.input, sparse=True) * mask.unsqueeze(2)).sum(1)
            inputs = inputs / mask.sum(1, keepdim=True).clamp(min=1)
            scores = torch.bmm(out, inputs.unsqueeze(2)).squeeze(2)  # (n, 1+k)
            return -(F.logsigmoid(scores * self.signs).sum(1) * (mask.sum(1) > 0)).sum()
        # (n, 2w, d): each context word predicts; sparse gradients: only the rows used move
        inputs = F.embedding(context, net.input, sparse=True)
        scores = torch.bmm(inputs, out.transpose(1, 2))  # (n, 2w, 1+k)
        return -(F.logsigmoid(scores * self.signs).sum(2) * mask).sum()

    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "block": self.block}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.block = state["epoch"], state["block"]
