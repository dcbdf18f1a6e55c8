"""Word2vec's objective (Mikolov et al. 2013): a word and its context close, noise words apart.

An objective that takes its step itself (`take_step`, see training/objective.py): word2vec's
SGD moves a few rows per (word, context) pair, pair after pair, which autograd and an
optimizer would do as gathers, a backward pass and a scatter per block (20x slower than
gensim). The pairs are trained by the numba kernel of wordvec/kernel.py instead; the loop still
owns the learning-rate schedule (linear decay, constant within a step as in gensim's jobs),
Ctrl-C, checkpoints, resume, metrics.jsonl and progress.

A step is a block of `batch_words` corpus positions: this epoch's subsampled words in it are the
centres. The block is cut into chunks of CHUNK_WORDS positions, each seeded from (seed, epoch,
block, chunk), which `workers` threads take in turn (Hogwild: no locks, as word2vec.c's and
gensim's threads). The data position (epoch, block) is the whole state: with one worker a run is
repeatable bit for bit, and a resumed run is the run never interrupted; with more, threads
updating the same rows at once make runs differ a little (as gensim's with several workers).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn

from lmlab.training.objective import NoLogMetrics
from lmlab.wordvec.corpus import Corpus, keep_probabilities, noise_probabilities

CHUNK_WORDS = 1000  # corpus positions per kernel call: the unit threads take and seeds cover


class WordVectorsNet(nn.Module):
    """The two matrices: input vectors (the word vectors kept) and output vectors."""

    def __init__(self, vocab_size: int, dim: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)  # word2vec's start: small input, zero output
        self.input = nn.Parameter((torch.rand(vocab_size, dim, generator=g) - 0.5) / dim)
        self.output = nn.Parameter(torch.zeros(vocab_size, dim))


class WordPairs(NoLogMetrics):
    """Blocks of the corpus, epoch after epoch, trained pair by pair by the numba kernel."""

    validates = False

    def __init__(
        self,
        corpus: Corpus,
        *,
        window: int = 5,
        negative: int = 5,
        sample: float = 1e-3,
        batch_words: int = 10_000,
        cbow: bool = False,
        workers: int = 1,
        seed: int = 0,
    ) -> None:
        from lmlab.wordvec.kernel import alias_tables, sigmoid_tables

        self.ids, self.lines = corpus.ids, corpus.lines
        self.window, self.negative, self.cbow, self.seed = window, negative, cbow, seed
        self.batch_words, self.workers = batch_words, workers
        self.keep = keep_probabilities(corpus.counts, sample)
        self.threshold, self.alias = alias_tables(noise_probabilities(corpus.counts))
        self.sigmoid, self.log_sigmoid = sigmoid_tables()
        self.blocks = -(-len(self.ids) // batch_words)  # per epoch
        self.units_per_batch = batch_words
        self.epoch, self.block, self.kept = 0, 0, None
        self.pool: ThreadPoolExecutor | None = None

    # -- data -------------------------------------------------------------------------------

    def subsample(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This epoch's kept words (int32), their lines (int32), and for each corpus position
        the number of kept words before it (N + 1,)."""
        rng = np.random.default_rng([self.seed, epoch])
        kept = rng.random(len(self.ids)) < self.keep[self.ids]
        before = np.concatenate([[0], np.cumsum(kept)])
        return self.ids[kept].astype(np.int32), self.lines[kept].astype(np.int32), before

    def chunks(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
        """This block's kept words and lines, and its chunks: (start, stop, seed) each."""
        if self.kept is None or self.kept[0] != self.epoch:
            self.kept = (self.epoch, *self.subsample(self.epoch))
        _, ids, lines, before = self.kept
        first = self.block * self.batch_words
        last = min(first + self.batch_words, len(self.ids))
        bounds = before[np.append(np.arange(first, last, CHUNK_WORDS), last)]
        seeds = np.random.default_rng([self.seed, self.epoch, self.block]).integers(
            0, 2**62, len(bounds) - 1
        )
        return ids, lines, list(zip(bounds[:-1], bounds[1:], seeds.tolist(), strict=True))

    # -- the step ---------------------------------------------------------------------------

    def take_step(self, model: nn.Module, lr: float) -> float:
        """Train the next block at learning rate `lr`, in place; its mean loss per prediction."""
        from lmlab.wordvec.kernel import train_chunk

        ids, lines, chunks = self.chunks()
        syn0, syn1 = model.input.detach().numpy(), model.output.detach().numpy()

        def run(chunk: tuple[int, int, int]) -> tuple[float, int]:
            start, stop, seed = chunk
            return train_chunk(ids, lines, start, stop, syn0, syn1, self.threshold, self.alias,
                               self.window, self.negative, self.cbow, lr, seed, self.sigmoid,
                               self.log_sigmoid)  # fmt: skip

        if self.workers > 1 and len(chunks) > 1:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="word2vec")
            results = list(self.pool.map(run, chunks))  # each thread takes the next chunk
        else:
            results = [run(chunk) for chunk in chunks]
        self.block += 1
        if self.block == self.blocks:
            self.epoch, self.block = self.epoch + 1, 0
        loss, made = (sum(x) for x in zip(*results, strict=True)) if results else (0.0, 0)
        return loss / max(made, 1)

    def close(self) -> None:
        """Stop the worker threads (training is over)."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    # -- the objective ----------------------------------------------------------------------

    def loss(self, net: nn.Module) -> torch.Tensor:
        """Not used: `take_step` takes the step."""
        raise NotImplementedError("word2vec trains by take_step(), not a loss to back-propagate")

    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "block": self.block}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.block = state["epoch"], state["block"]
