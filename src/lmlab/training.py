"""One training loop for every neural language model trained here.

Maximum likelihood with teacher forcing: the model reads tokens 0..T-1 of a window and is scored
by cross-entropy on tokens 1..T. Around it: AdamW (weight decay on matrices only), a linear
warm-up then cosine decay of the learning rate, gradient clipping, gradient accumulation,
validation loss every K steps with early stopping, and checkpoints that let `resume=True`
continue a killed run exactly (weights, optimizer, random generators and data position).

Batches: Transformers and the MLP read independent random windows of the token stream (as
nanoGPT does); recurrent models read B parallel streams in order and carry their hidden state
from one batch to the next (truncated back-propagation through time).

Distributed: under `torchrun --nproc_per_node N -m lmlab train ...` every process trains on its
own shard of the text with DistributedDataParallel (gloo on CPU, nccl on GPU), averaging
gradients, so one step sees N x batch_size windows; process 0 writes the run directory.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import distributed as dist
from torch import nn

from lmlab.errors import LmlabError
from lmlab.home import atomic_dir, atomic_write_text
from lmlab.lm.neural.bert import IGNORE
from lmlab.lm.neural.precision import cpu_has_bfloat16
from lmlab.lm.neural.run import (
    build_model,
    load_weights,
    make_config,
    read_run,
    save_weights,
    write_run_files,
)

TOKENIZER_KINDS = ("char", "word", "bpe", "byte-bpe", "wordpiece")
CHECKPOINT = "checkpoint"


@dataclass
class TrainConfig:
    """How to train (the model's shape is its own config dataclass)."""

    steps: int | None = None  # optimizer steps; None: from epochs, else 1000
    epochs: float | None = None  # passes over the training tokens (sets steps)
    batch_size: int = 12
    accumulate: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    min_lr: float | None = None  # the end of the cosine; None: lr / 10
    warmup: int = 100  # steps of linear warm-up
    optimizer: str = "adamw"  # adamw, or sgd (plain SGD, as Zaremba et al. 2014 trained LSTMs)
    weight_decay: float | None = None  # None: 0.1 for adamw (decoupled); 0 for sgd (an L2 term)
    beta2: float = 0.99  # 0.99 rather than 0.999: small models, few tokens per step (nanoGPT)
    grad_clip: float = 1.0  # clip the gradient norm to this; 0 disables
    eval_every: int = 250  # steps between validation losses (and checkpoints)
    eval_batches: int = 20  # random windows batches per periodic validation estimate
    patience: int | None = None  # stop after this many evaluations without improvement
    seed: int = 1337
    device: str = "auto"  # auto: cuda, then mps, then cpu
    # float32, or bfloat16: matrix products in bfloat16 under autocast, weights and optimizer
    # state kept in float32 (nanoGPT's `dtype`). auto: bfloat16 where the device computes in it
    # natively (see pick_dtype), else float32.
    dtype: str = "auto"
    log_every: int = 10  # steps between metrics.jsonl lines


@dataclass
class TrainResult:
    """What a run produced: where, how far, and its final numbers."""

    out: str
    steps: int
    train_loss: float
    valid_loss: float | None
    valid_perplexity: float | None
    tokens_per_second: float
    seconds: float
    stopped_early: bool = False
    first_step: int = 0  # the step this call started from (> 0 when it resumed a run)
    already_complete: bool = False  # resumed a run that had finished: nothing was trained
    history: list[dict] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("history")
        return out


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint to resume from was written; its message
    says where and how to continue."""

    def __init__(self, step: int, out: Path) -> None:
        super().__init__(
            f"interrupted at step {step}: checkpoint saved in {out}; "
            "run the same command with --resume to continue"
        )


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(name: str) -> torch.device:
    """auto -> cuda, mps or cpu; otherwise the named device, which must exist on this machine
    (a one-line error here rather than an assertion from deep inside torch)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LmlabError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    count = {
        "cpu": 1,
        "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "mps": int(_mps_available()),
    }.get(device.type, 0)
    if (device.index or 0) >= count:
        raise LmlabError(f"device {name!r} is not available here; use auto or cpu")
    return device


def pick_dtype(name: str, device: torch.device) -> str:
    """auto -> bfloat16 on a CUDA GPU that supports it or a CPU with AVX512-BF16 or AMX, else
    float32. Measured on an AVX512-BF16 CPU, 60 PTB steps of each model kind ran 1.4-1.9x faster
    in bfloat16 (gpt 1.42x, bert 1.48x, rnn 1.51x, gru 1.58x, lstm 1.61x, mlp 1.87x), and the
    Tiny Shakespeare GPT ended at the float32 loss (1.9074 vs 1.9082)."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_bfloat16() else "float32"


def start_distributed() -> tuple[int, int]:
    """(rank, world size): joins the torchrun process group when there is one, else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def learning_rate(step: int, config: TrainConfig, total: int) -> float:
    """Linear warm-up to lr over `warmup` steps, then cosine decay to min_lr at `total`."""
    min_lr = config.lr / 10 if config.min_lr is None else config.min_lr
    if step < config.warmup:
        return config.lr * (step + 1) / (config.warmup + 1)
    progress = min(1.0, (step - config.warmup) / max(1, total - config.warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (config.lr - min_lr)


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
            mlm_logits, labels, nsp_logits, is_next = _masked_forward(
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


def _masked_forward(net, window, stream, corrupt, pairs, generator, device):
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


def train(
    kind: str,
    corpus: Sequence[str | Path],
    out: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vocab_size: int | None = None,
    valid: str | Path | None = None,
    valid_fraction: float | None = None,
    preset: str | None = None,
    model_options: dict | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    init_from: str | Path | None = None,
    freeze: int = 0,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train a language model of `kind` on text files; write a run directory in `out`.

    Args:
        kind: mlp, rnn, lstm, gru or gpt.
        corpus: UTF-8 text files.
        out: the run directory (model.safetensors, config.json, tokenizer.json, lmlab.json,
            checkpoint/, metrics.jsonl, loss.png).
        tokenizer: a folder with tokenizer.json, or a kind to train on the corpus: char, word,
            bpe, byte-bpe, wordpiece (default: char; wordpiece for bert, which needs [MASK]).
        vocab_size: for a tokenizer trained here (default 8000; all words or characters for
            word and char).
        valid: a validation text file; or `valid_fraction`, the last fraction of the corpus.
        preset: a named model size (e.g. "tiny"); `model_options` override its fields.
        config: optimisation settings (TrainConfig).
        resume: continue the run in `out` from its checkpoint, exactly.
        init_from: fine-tune: start from the weights, shape and tokenizer of this run directory
            (of the same kind); only dropout may change, and tokenizer, vocab_size and preset
            must not be given (the source run fixes them).
        freeze: keep the embeddings and the first `freeze` blocks fixed (gpt, bert).
        progress: show a progress bar.
        on_step: called with the step number after every optimizer step.

    Returns:
        A TrainResult (final train and validation loss, tokens per second, ...).

    Example:
        >>> train("gpt", ["input.txt"], "runs/shakespeare", preset="shakespeare-cpu",
        ...       valid_fraction=0.1, config=TrainConfig(steps=2000))
    """
    config = config or TrainConfig()
    # Building any torch optimizer imports torch._dynamo (2-3 s); do it while the text is read.
    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True).start()
    out = Path(out)
    if init_from is not None:
        _check_fine_tune_options(init_from, tokenizer=tokenizer, vocab_size=vocab_size,
                                 preset=preset)  # fmt: skip
        tokenizer = init_from  # what the run really uses, and records
    tokenizer = tokenizer or ("wordpiece" if kind == "bert" else "char")
    rank, world = start_distributed()
    device = pick_device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    config = replace(config, dtype=pick_dtype(config.dtype, device))  # the run records which
    _check_config(config, valid, valid_fraction)
    train_options = {k: v for k, v in asdict(config).items() if k != "log_every"}
    train_options.update(tokenizer=str(tokenizer), vocab_size=vocab_size, valid=str(valid or ""))
    train_options.update(valid_fraction=valid_fraction, corpus=[str(p) for p in corpus])
    train_options.update(init_from=str(init_from or ""), freeze=freeze)
    if init_from is not None:
        model_options = _fine_tune_setup(Path(init_from), kind, model_options)
    if resume:
        tok, model_config = _resume_setup(out, kind, train_options, preset, model_options)
    else:
        if (out / CHECKPOINT).exists():
            raise LmlabError(f"{out} already holds a training run: pass --resume or another --out")
        # a bad shape is an error before anything is written (the vocabulary size is a stand-in)
        make_config(kind, preset, **{**(model_options or {}), "vocab_size": 1})
        model_config = None
        if rank == 0:  # the others read the tokenizer process 0 wrote
            _prepare_tokenizer(tokenizer, corpus, out, vocab_size)
        if world > 1:
            dist.barrier()
        from lmlab.text.hf_tokenizer import HFTokenizer

        tok = HFTokenizer(out)
    texts, valid_text = _split(corpus, valid, valid_fraction)
    if valid_text is not None and not resume and rank == 0:
        atomic_write_text(out / "valid.txt", valid_text)
    if model_config is None:
        model_config = make_config(
            kind, preset, **{**(model_options or {}), "vocab_size": tok.vocab_size}
        )
    torch.manual_seed(config.seed)
    model = build_model(kind, model_config).to(device)
    if init_from is not None and not resume:
        load_weights(model, Path(init_from) / "model.safetensors")
    if freeze:
        _freeze(model, freeze)
    train_ids = encode_corpus(tok, texts)
    valid_ids = encode_corpus(tok, [valid_text]) if valid_text is not None else None
    context = model.sequence_length
    if valid_ids is not None and len(valid_ids) < context + 1:
        raise LmlabError(
            f"the validation text has {len(valid_ids)} tokens, fewer than one window of "
            f"{context + 1}: hold out more (--valid-fraction) or lower --context"
        )
    shard = train_ids[rank * len(train_ids) // world : (rank + 1) * len(train_ids) // world]
    batches = Batches(shard, config.batch_size, context, model.carries_state, config.seed + rank)
    tokens_per_step = config.batch_size * context * config.accumulate
    total = config.steps or (
        math.ceil(config.epochs * len(train_ids) / tokens_per_step) if config.epochs else 1000
    )
    optimizer = optimizer_for(model, config)
    if not resume and rank == 0:
        write_run_files(out, kind, model_config, {**train_options, "processes": world})
        (out / "metrics.jsonl").unlink(missing_ok=True)
    loop = _Loop(model, optimizer, batches, config, out, total, device)
    loop.rank, loop.world = rank, world
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        loop.net = DistributedDataParallel(model)
    if getattr(model, "objective", "causal") == "masked":
        loop.corrupt = _masker(tok, model_config)
        if model_config.nsp:
            loop.pairs = _pairer(tok)
    if resume:
        loop.restore()
    result = loop.run(valid_ids, progress=progress, on_step=on_step)
    if world > 1:
        dist.destroy_process_group()
    return result


class _Loop:
    """The optimisation loop and its checkpointed state."""

    def __init__(self, model, optimizer, batches, config, out, total, device):
        self.model, self.optimizer, self.batches = model, optimizer, batches
        self.config, self.out, self.total, self.device = config, out, total, device
        self.step = 0
        self.best = math.inf  # lowest validation loss so far
        self.bad_evals = 0  # evaluations since the best
        self.cache = None  # recurrent models: the hidden state carried across batches
        # While a step is under way: where it started (batch position, random state, hidden
        # state), so that an interrupt inside it rolls back there (see run).
        self.step_start = None
        # After step N until its bookkeeping (metrics line, validation, checkpoint) is done:
        # its loss; a run interrupted then redoes that bookkeeping when resumed (see settle).
        self.pending: dict | None = None
        self.corrupt = None  # masked models: (ids, generator) -> (inputs, labels)
        self.pairs = None  # NSP models: (windows, stream, generator) -> (ids, segments, is_next)
        self.nsp: list[tuple[float, float]] = []  # NSP loss and accuracy since the last log
        self.history: list[dict] = []
        self.net = model  # what the training step calls: the model, or its DDP wrapper
        self.rank, self.world = 0, 1

    def restore(self) -> None:
        folder = self.out / CHECKPOINT
        load_weights(self.model, folder / "model.safetensors")
        state = torch.load(folder / "state.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        if len(state["ranks"]) != self.world:
            raise LmlabError(
                f"{self.out} was trained by {len(state['ranks'])} process(es): resume with as many"
            )
        mine = state["ranks"][self.rank]
        self.batches.load_state_dict(mine["batches"])
        torch.set_rng_state(mine["torch_rng"])
        self.cache = mine["cache"]
        self.step, self.best, self.bad_evals = state["step"], state["best"], state["bad_evals"]
        self.pending, self.nsp = state.get("pending"), state.get("nsp", [])
        # The metrics up to the checkpoint (none yet when the run stopped before its first
        # line); a pending step's lines are written again when its bookkeeping is redone.
        path = self.out / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.is_file() else []
        last = self.step - 1 if self.pending is not None else self.step
        self.history = [r for r in map(json.loads, lines) if r["step"] <= last]
        if self.rank == 0:
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.history))

    def checkpoint(self) -> None:
        """Write checkpoint/ as a whole (a crash leaves the previous one intact).

        Every process's data position and random state are kept, so --resume is exact.
        """
        mine = {"batches": self.batches.state_dict(), "torch_rng": torch.get_rng_state(),
                "cache": self.cache}  # fmt: skip
        ranks = [mine]
        if self.world > 1:
            ranks = [None] * self.world
            dist.all_gather_object(ranks, mine)
        if self.rank != 0:
            return
        with atomic_dir(self.out / CHECKPOINT) as tmp:
            save_weights(self.model, tmp / "model.safetensors")
            state = {
                "step": self.step,
                "best": self.best,
                "bad_evals": self.bad_evals,
                "pending": self.pending,
                "nsp": self.nsp,
                "optimizer": self.optimizer.state_dict(),
                "ranks": ranks,
            }
            torch.save(state, tmp / "state.pt")
        if not (self.out / "model.safetensors").exists() or math.isinf(self.best):
            save_weights(self.model, self.out / "model.safetensors")  # no validation: the last

    def log(self, record: dict) -> None:
        self.history.append(record)
        if self.rank != 0:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def train_step(self) -> float:
        """One optimizer step over `accumulate` micro-batches; the mean loss."""
        model, config = self.model, self.config
        # Where this step starts: an interrupt inside it rolls back here (see run). The hidden
        # state is copied shallowly: a step replaces its tensors, it does not write into them.
        self.step_start = (self.batches.state_dict(), torch.get_rng_state(), copy.copy(self.cache))
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step, config, self.total)
        total_loss = 0.0
        for micro in range(config.accumulate):
            # DDP averages gradients at backward(); only the last micro-batch needs to.
            syncing = micro == config.accumulate - 1 or self.world == 1
            with contextlib.nullcontext() if syncing else self.net.no_sync():
                total_loss += self._micro_step(model, config)
        if self.world > 1:  # the loss of the whole step, over every process's windows
            mean = torch.tensor([total_loss], dtype=torch.float64)
            dist.all_reduce(mean)
            total_loss = mean.item() / self.world
        if not math.isfinite(total_loss):
            raise LmlabError(
                f"the loss became {total_loss} at step {self.step + 1}; the last good checkpoint "
                f"is kept in {self.out / CHECKPOINT}: lower --lr and train again"
            )
        if config.grad_clip > 0:
            clip_in_update(self.optimizer, model.parameters(), config.grad_clip)
        with _ctrl_c_held():  # the update and the step count change together, or neither
            self.optimizer.step()
            self.step, self.step_start, self.pending = self.step + 1, None, {"loss": total_loss}
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss

    def _micro_step(self, model: nn.Module, config: TrainConfig) -> float:
        """Forward and backward over one batch; its loss, scaled for accumulation."""
        window, restart = self.batches.next()
        window = window.to(self.device)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=config.dtype == "bfloat16"):
            loss = self._loss(model, config, window, restart)
        (loss / config.accumulate).backward()
        return loss.item() / config.accumulate

    def _loss(self, model: nn.Module, config: TrainConfig, window, restart: bool) -> torch.Tensor:
        """The cross-entropy of one batch of windows (masked tokens, or every next token)."""
        if self.corrupt is not None:  # masked LM: predict the chosen tokens of the window
            logits, targets, nsp_logits, is_next = _masked_forward(
                self.net, window[:, :-1].cpu(), self.batches.ids, self.corrupt, self.pairs,
                self.batches.generator, self.device,
            )  # fmt: skip
            loss = nn.functional.cross_entropy(logits.float(), targets)
            if nsp_logits is not None:  # BERT's pre-training loss: MLM + NSP
                nsp_loss = nn.functional.cross_entropy(nsp_logits.float(), is_next)
                right = (nsp_logits.argmax(-1) == is_next).float().mean().item()
                self.nsp.append((nsp_loss.item(), right))
                loss = loss + nsp_loss
        else:
            if model.carries_state:
                if restart or self.cache is None:
                    self.cache = model.new_cache(config.batch_size)
                logits = self.net(window[:, :-1], self.cache)
                self.cache.detach_()  # truncated BPTT: keep the state, cut the gradient
            else:
                logits = self.net(window[:, :-1])
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), window[:, 1:].flatten()
            )
        return loss

    def evaluate(self, valid_ids, *, full: bool) -> dict:
        config, context = self.config, self.model.sequence_length
        windows = None if full else config.eval_batches * config.batch_size
        extra = {}
        if self.corrupt is None:
            loss = evaluate_loss(self.model, valid_ids, context, windows=windows)
        else:
            loss, extra = masked_metrics(self.model, valid_ids, context, self.corrupt,
                                         pairs=self.pairs, windows=windows)  # fmt: skip
        record = {"step": self.step, "valid_loss": loss, "valid_perplexity": math.exp(loss)}
        record.update({f"valid_{k}": v for k, v in extra.items()})
        if full:
            record["final"] = True
        return record

    def run(self, valid_ids, *, progress: bool, on_step) -> TrainResult:
        from tqdm.auto import tqdm

        if self.complete(valid_ids):  # a resumed run that had finished: nothing to do
            final = next((r for r in reversed(self.history) if r.get("final")), None)
            return self.result(final, first_step=self.step, already_complete=True)
        config = self.config
        tokens_per_step = (
            config.batch_size * self.model.sequence_length * config.accumulate * self.world
        )
        main = self.rank == 0  # the process that reports and writes
        bar = tqdm(
            total=self.total,
            initial=self.step,
            disable=not progress or not main,
            unit="step",
            leave=False,
        )
        start, start_step = time.perf_counter(), self.step
        loss = self.pending["loss"] if self.pending is not None else math.nan
        self.model.train()
        try:
            if self.pending is not None:  # resumed inside a step's bookkeeping: finish it
                self.settle(valid_ids, bar)
            while not self.exhausted():
                loss = self.train_step()
                rate = (self.step - start_step) * tokens_per_step / (time.perf_counter() - start)
                self.pending["tokens_per_s"] = rate
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{rate:,.0f}", refresh=False)
                self.settle(valid_ids, bar)
                if on_step is not None:
                    on_step(self.step)
        except KeyboardInterrupt:
            if self.step_start is not None:  # interrupted inside a step: forget that step
                batches, rng, self.cache = self.step_start
                self.batches.load_state_dict(batches)
                torch.set_rng_state(rng)
                self.optimizer.zero_grad(set_to_none=True)
                self.step_start = None
            self.checkpoint()
            bar.close()
            if main:
                _plot(self.history, self.out / "loss.png")
            raise TrainingInterrupted(self.step, self.out) from None
        bar.close()
        seconds = time.perf_counter() - start
        rate = (self.step - start_step) * tokens_per_step / max(seconds, 1e-9)
        try:  # the last step's checkpoint is written: an interrupt here leaves it as it is
            final = self.finish(valid_ids)
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.step, self.out) from None
        return self.result(final, first_step=start_step, loss=loss, rate=rate, seconds=seconds)

    def settle(self, valid_ids, bar) -> None:
        """The bookkeeping of the step just taken: its metrics line every log_every steps, and
        every eval_every steps (and at the last) the validation loss, the best weights and a
        checkpoint.

        Until it ends, `pending` holds the step's loss, and `best`, `bad_evals` and `nsp` keep
        their values from before it; a checkpoint written by an interrupt in the meantime
        therefore makes --resume redo it all, so the resumed run's metrics and early-stopping
        state are those of a run never interrupted.
        """
        config, step = self.config, self.step
        logged = step % config.log_every == 0 or step == self.total
        if logged:
            lr = self.optimizer.param_groups[0]["lr"]
            record = {"step": step, "loss": self.pending["loss"], "lr": lr,
                      "tokens_per_s": self.pending.get("tokens_per_s", 0.0)}  # fmt: skip
            if self.nsp:  # NSP models: the mean NSP loss and accuracy since the last log
                losses, rights = zip(*self.nsp, strict=True)
                n = len(self.nsp)
                record.update(nsp_loss=sum(losses) / n, nsp_accuracy=sum(rights) / n)
            self.log(record)
        evaluated = step % config.eval_every == 0 or step == self.total
        best, bad_evals = self.best, self.bad_evals
        if evaluated and valid_ids is not None:
            record = self.evaluate(valid_ids, full=False)
            self.log(record)
            if record["valid_loss"] < best:
                if self.rank == 0:
                    save_weights(self.model, self.out / "model.safetensors")
                best, bad_evals = record["valid_loss"], 0
            else:
                bad_evals += 1
            bar.set_postfix(loss=f"{self.pending['loss']:.4f}", valid=f"{best:.4f}")
        nsp = [] if logged else self.nsp
        # one statement: an interrupt finds the bookkeeping done entirely or not at all
        self.best, self.bad_evals, self.nsp, self.pending = best, bad_evals, nsp, None
        if evaluated:
            self.checkpoint()

    def exhausted(self) -> bool:
        """Whether training is over: every step taken, or early stopping's patience used up."""
        patience = self.config.patience
        return self.step >= self.total or (patience is not None and self.bad_evals >= patience)

    def complete(self, valid_ids) -> bool:
        """Whether the run has nothing left to do: training over and, with validation, the
        final evaluation of the best weights logged."""
        if self.pending is not None or not self.exhausted():
            return False
        return valid_ids is None or any(r.get("final") for r in self.history)

    def finish(self, valid_ids) -> dict | None:
        """After training: the full validation of the best weights (logged), and loss.png."""
        final = None
        if self.world > 1:
            dist.barrier()  # process 0 has written the weights
        if valid_ids is not None:
            load_weights(self.model, self.out / "model.safetensors")  # the best one
            final = self.evaluate(valid_ids, full=True)
            self.log(final)
        if self.rank == 0:
            _plot(self.history, self.out / "loss.png")
        return final

    def result(
        self, final, *, first_step, loss=None, rate=0.0, seconds=0.0, already_complete=False
    ) -> TrainResult:
        """The TrainResult of this call; `loss` None: the last logged one (a finished run)."""
        if loss is None:
            losses = [r["loss"] for r in self.history if "loss" in r]
            loss = losses[-1] if losses else math.nan
        return TrainResult(
            str(self.out),
            self.step,
            loss,
            final["valid_loss"] if final else None,
            final["valid_perplexity"] if final else None,
            rate,
            seconds,
            stopped_early=self.step < self.total,
            first_step=first_step,
            already_complete=already_complete,
            history=self.history,
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


def _masker(tokenizer, config) -> Callable:
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


def _pairer(tokenizer) -> Callable:
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


def clip_in_update(optimizer: torch.optim.Optimizer, parameters, max_norm: float) -> None:
    """Make `optimizer`'s next step clip the gradient to norm `max_norm`, as `clip_grad_norm_`.

    A fused optimizer divides every gradient by its `grad_scale` tensor (the hook torch's
    GradScaler unscales through); norm / max_norm there, when above 1, clips in the update
    itself, without `clip_grad_norm_`'s extra pass over the gradients (0.6 ms of a 28 ms step
    of the Tiny Shakespeare GPT on this CPU).
    """
    norm = nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
    optimizer.grad_scale = ((norm + 1e-6) / max_norm).clamp(min=1.0)


def optimizer_for(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over the trainable weights; weight decay on matrices, not biases and norms.

    The fused update (one kernel over all weights) takes 0.4 ms per step on the 0.8M weights of
    the Tiny Shakespeare GPT on this CPU, `foreach` 2.9 ms, the plain loop 1.8 ms.
    """
    sgd = config.optimizer == "sgd"
    decay = config.weight_decay if config.weight_decay is not None else (0.0 if sgd else 0.1)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    if sgd:
        return torch.optim.SGD(groups, lr=config.lr, fused=True)
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, config.beta2), fused=True)


def _check_config(config: TrainConfig, valid, valid_fraction) -> None:
    checks = [
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.accumulate >= 1, "gradient accumulation must be at least 1"),
        (config.steps is None or config.steps >= 1, "--steps must be at least 1"),
        (config.epochs is None or config.epochs > 0, "--epochs must be positive"),
        (config.lr > 0, "--lr must be positive"),
        (config.warmup >= 0, "--warmup must be at least 0"),
        (config.weight_decay is None or config.weight_decay >= 0, "--weight-decay must be >= 0"),
        (config.grad_clip >= 0, "--grad-clip must be >= 0 (0 disables clipping)"),
        (config.patience is None or config.patience >= 1, "--patience must be at least 1"),
        (config.dtype in ("float32", "bfloat16"), "--dtype must be auto, float32 or bfloat16"),
        (config.optimizer in ("adamw", "sgd"), "--optimizer must be adamw or sgd"),
        (config.eval_every >= 1, "the evaluation interval must be at least 1"),
        (valid is None or valid_fraction is None, "give --valid or --valid-fraction, not both"),
        (valid_fraction is None or 0 < valid_fraction < 1, "--valid-fraction must be in (0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise LmlabError(message)


def _prepare_tokenizer(tokenizer, corpus, out: Path, vocab_size: int | None):
    """Copy a tokenizer folder into the run, or train one of the named kinds on the corpus."""
    import shutil
    import tempfile

    from lmlab.text.hf_tokenizer import HFTokenizer
    from lmlab.text.tokenizer_training import train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    if str(tokenizer) in TOKENIZER_KINDS:
        with tempfile.TemporaryDirectory(dir=out) as tmp:  # size None: every char/word seen
            train_tokenizer(corpus, Path(tmp) / "tok", kind=str(tokenizer), vocab_size=vocab_size)
            source = Path(tmp) / "tok"
            for name in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copyfile(source / name, out / name)
    else:
        source = Path(tokenizer)
        HFTokenizer(source)  # a clear error when it is not a tokenizer folder
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (source / name).is_file():
                shutil.copyfile(source / name, out / name)
    return HFTokenizer(out)


def _check_fine_tune_options(source, **given) -> None:
    """Refuse the options --init-from overrides: the source run fixes the tokenizer and the
    shape, so a --tokenizer, --vocab-size or --preset would be ignored (and misrecorded)."""
    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if named:
        raise LmlabError(
            f"--init-from {source} uses that run's tokenizer and shape; "
            f"do not give {', '.join(named)}"
        )


def _fine_tune_setup(source: Path, kind: str, model_options: dict | None) -> dict:
    """The model options of the run to start from (its shape, with a new dropout if given)."""
    run = read_run(source)
    if run.get("kind") != kind:
        raise LmlabError(f"{source} holds a {run.get('kind')!r} model, not {kind!r}")
    changed = {
        k for k, v in (model_options or {}).items() if k != "dropout" and run["model"].get(k) != v
    }
    if changed:
        raise LmlabError(
            f"the shape comes from --init-from {source}; do not change {', '.join(sorted(changed))}"
        )
    return {**run["model"], **(model_options or {})}


def _freeze(model: nn.Module, layers: int) -> None:
    """Stop training the embeddings and the first `layers` Transformer blocks."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not 0 < layers <= len(blocks):
        count = len(blocks) if blocks is not None else 0
        raise LmlabError(
            f"--freeze takes 1 to {count} blocks of a gpt or bert model"
            if count
            else "--freeze applies to gpt and bert models (their Transformer blocks)"
        )
    frozen = [model.wte, *blocks[:layers]]
    if hasattr(model, "wpe"):
        frozen.append(model.wpe)
    for module in frozen:
        module.requires_grad_(False)


def _resume_setup(out: Path, kind: str, train_options: dict, preset, model_options):
    """The tokenizer and model config of the run to resume; an error naming the options that
    differ from the run's (training options, or the model's shape: preset and overrides)."""
    from lmlab.lm.neural import TRAIN_CLI_OPTIONS
    from lmlab.text.hf_tokenizer import HFTokenizer

    if not (out / CHECKPOINT / "state.pt").is_file():
        raise LmlabError(f"nothing to resume in {out}: it has no checkpoint")
    run = read_run(out)
    if run.get("kind") != kind:
        raise LmlabError(f"{out} holds a {run.get('kind')!r} run, not {kind!r}: cannot resume")
    changed = [k for k, v in train_options.items() if run.get("train", {}).get(k) != v]
    asked = make_config(
        kind, preset, **{**(model_options or {}), "vocab_size": run["model"]["vocab_size"]}
    )
    cli_name = {field: name for name, field in TRAIN_CLI_OPTIONS.items()}
    changed += [
        f"{cli_name[k]} ({k})" if k in cli_name else k
        for k, v in asdict(asked).items()
        if run["model"].get(k) != v
    ]
    changed.sort()
    if changed:
        raise LmlabError(
            f"--resume needs the options of the run in {out}; these differ: {', '.join(changed)}"
        )
    return HFTokenizer(out), make_config(kind, **run["model"])


def _split(corpus, valid, valid_fraction) -> tuple[list[str], str | None]:
    """Training texts and the validation text (a file, or the last fraction of the corpus)."""
    from lmlab.text.tokenizer_training import read_corpus

    texts = read_corpus(corpus)
    if valid is not None:
        return texts, read_corpus([valid])[0]
    if valid_fraction is None:
        return texts, None
    joined = "\n".join(texts) if len(texts) > 1 else texts[0]
    cut = int(len(joined) * (1 - valid_fraction))  # the last characters, as nanoGPT splits
    return [joined[:cut]], joined[cut:]


def _plot(history: list[dict], path: Path) -> None:
    """loss.png: training loss and validation loss against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_points = [(r["step"], r["loss"]) for r in history if "loss" in r]
    valid_points = [(r["step"], r["valid_loss"]) for r in history if "valid_loss" in r]
    if not train_points:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*train_points, strict=True), label="training loss")
    if valid_points:
        ax.plot(*zip(*valid_points, strict=True), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    from lmlab.home import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
