"""`train_seq2seq()`: an encoder-decoder on a table of source-target pairs.

The pairs are read (seq2seq/data.py), one joint tokenizer is trained on both sides (or a given
one copied) into the run, the model built (lm/neural/transformer.py or seq2seq_rnn.py, by
`arch`), and the one loop
(loop.py) trains it on the Seq2Seq objective (objectives/seq2seq.py): resume, dtype, metrics
and loss.png come with it.

The run directory: tokenizer.json, config.json, lmlab.json ({"kind": "seq2seq", "model":
{config}, "train": {options, "arch"}}), model.safetensors (the best weights by validation
loss, else the last), checkpoint/, metrics.jsonl, loss.png.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from importlib import import_module
from pathlib import Path

import torch

from lmlab.errors import LmlabError
from lmlab.lm.neural import SEQ2SEQ_ARCHS
from lmlab.lm.neural.run import write_run_files
from lmlab.training import lm_setup as setup
from lmlab.training.checkpoint import CHECKPOINT, ModelWeights, resumable_run
from lmlab.training.devices import pick_device, pick_dtype
from lmlab.training.loop import Loop
from lmlab.training.objectives.seq2seq import PairBatches, Seq2Seq, validation_batches
from lmlab.training.optim import optimizer_for
from lmlab.training.progress import progress_callback
from lmlab.training.results import TrainConfig, TrainResult

KIND = "seq2seq"
ARCHS = tuple(SEQ2SEQ_ARCHS)
TOKENIZERS = ("byte-bpe", "bpe")  # the kinds trained here that have an end-of-text token


class TruncationWarning(UserWarning):
    """Some sources or targets were longer than the model's positions and were cut."""


def train_seq2seq(
    train_file: str | Path,
    out: str | Path,
    *,
    valid: str | Path | None = None,
    source_col: str | None = None,
    target_col: str | None = None,
    arch: str = "transformer",
    tokenizer: str | Path = "byte-bpe",
    vocab_size: int | None = 8000,
    preset: str | None = None,
    model_options: dict | None = None,
    label_smoothing: float = 0.0,
    minutes: float | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Train an encoder-decoder on the pairs of a table; write a run directory in `out`.

    Args:
        train_file: a .csv, .tsv, .jsonl or .parquet table with a source and a target column.
        out: the run directory. A run that fails before its first checkpoint removes what it
            created there.
        valid: a held-out table with the same columns (validation loss and perplexity of its
            targets; the best weights by it are kept).
        source_col, target_col: the columns (default: a table's only two columns, in order).
        arch: transformer or rnn (lm/neural/seq2seq_rnn.py: set its attention, cell, ... in
            `model_options`).
        tokenizer: a folder with tokenizer.json, or a kind to train on both sides jointly:
            byte-bpe (default) or bpe.
        vocab_size: of a tokenizer trained here.
        preset: tiny or base-cpu (the default shape); `model_options` override its fields
            (the arch's config dataclass: TransformerConfig or Seq2SeqRNNConfig).
        label_smoothing: training's label smoothing (0: none; Vaswani et al. used 0.1).
        minutes: a time budget: training stops (and the schedule ends) when it is spent, or
            at the steps, whichever comes first (benchmarks compare models at equal minutes).
        config: optimisation settings (TrainConfig); batch_size counts pairs.
        resume: continue the run in `out` from its checkpoint, exactly.
        progress: a progress bar (True), none (False), or a callback of the loop's events.

    Example:
        >>> train_seq2seq("en-es/train.tsv", "runs/en-es", valid="en-es/valid.tsv",
        ...               source_col="en", target_col="es", config=TrainConfig(steps=2000))
    """
    from lmlab.seq2seq.data import read_pairs

    config = config or TrainConfig()
    out = Path(out)
    model_config(arch, preset, **(model_options or {}))  # a bad arch or shape: an error first
    if minutes is not None and minutes <= 0:
        raise LmlabError("--minutes must be positive", param="minutes")
    if not 0 <= label_smoothing < 1:
        raise LmlabError("--label-smoothing must be in [0, 1)", param="label_smoothing")
    device = pick_device(config.device)
    config = replace(config, dtype=pick_dtype(config.dtype, device))
    setup.check_config(config, valid, None)
    pairs = read_pairs(train_file, source_col, target_col)
    held_out = read_pairs(valid, pairs.source_col, pairs.target_col) if valid else None
    options = {k: v for k, v in asdict(config).items() if k != "log_every"}
    options.update(arch=arch, train=str(train_file), valid=str(valid or ""),
                   source_col=pairs.source_col, target_col=pairs.target_col,
                   tokenizer=str(tokenizer), vocab_size=vocab_size,
                   label_smoothing=label_smoothing, minutes=minutes)  # fmt: skip
    created = setup.CreatedFiles(out)
    try:
        loop = _setup(pairs, held_out, out, options, tokenizer=tokenizer, vocab_size=vocab_size,
                      preset=preset, model_options=model_options, config=config, device=device,
                      resume=resume, progress=progress)  # fmt: skip
        return loop.run()
    except BaseException:
        if not resume and not (out / CHECKPOINT).exists():
            created.remove()
        raise


def model_config(arch: str, preset: str | None, **options):
    """The config of an `arch` model from a preset and overrides; a clear error for a bad one."""
    if arch not in ARCHS:
        raise LmlabError(f"--arch must be one of {', '.join(ARCHS)}, not {arch!r}", param="arch")
    module, _, config_name = SEQ2SEQ_ARCHS[arch]
    presets, config_class = (
        import_module(module).PRESETS,
        getattr(import_module(module), config_name),
    )

    if preset is not None and preset not in presets:
        raise LmlabError(f"unknown preset {preset!r}; one of {', '.join(presets)}")
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise LmlabError(f"a {arch} model has no option {', '.join(unknown)}")
    config = config_class(**{**presets.get(preset or "", {}), **options})
    try:
        build_model(arch, config, check_only=True)
    except ValueError as e:
        raise LmlabError(f"--arch {arch}: {e}") from None
    return config


def build_model(arch: str, config, *, check_only: bool = False):
    """A freshly initialised `arch` model (seed torch first for reproducible weights); with
    `check_only`, only the config's checks (a ValueError for a bad one)."""
    module, model_name, _ = SEQ2SEQ_ARCHS[arch]
    model_class = getattr(import_module(module), model_name)
    if check_only:
        return model_class.check(config)
    return model_class(config)


def end_id(tok) -> int:
    """The id that starts a target and ends a source and a target: the end of text."""
    if not tok.eos_ids:
        raise LmlabError(
            "the tokenizer has no end-of-text token; train one here (byte-bpe or bpe)",
            param="tokenizer",
        )
    return min(tok.eos_ids)


def _tokenizer(tokenizer, pairs, out: Path, vocab_size):
    """The run's tokenizer: one trained on both sides of the training pairs, or a copy."""
    if str(tokenizer) in setup.TOKENIZER_KINDS and str(tokenizer) not in TOKENIZERS:
        raise LmlabError(
            f"--tokenizer {tokenizer} has no end-of-text token; use {' or '.join(TOKENIZERS)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        both = Path(tmp) / "pairs.txt"
        both.write_text("\n".join(pairs.sources + pairs.targets) + "\n", encoding="utf-8")
        return setup.prepare_tokenizer(tokenizer, [both], out, vocab_size)


def _encode(tok, texts: list[str], limit: int) -> tuple[list[list[int]], int]:
    """Token ids of the texts, each cut to `limit` tokens; and how many were cut."""
    ids = tok.encode_batch(texts)
    cut = sum(len(row) > limit for row in ids)
    return [row[:limit] for row in ids], cut


def _setup(pairs, held_out, out: Path, options: dict, *, tokenizer, vocab_size, preset,
           model_options, config: TrainConfig, device, resume, progress) -> Loop:  # fmt: skip
    from lmlab.text.hf_tokenizer import HFTokenizer

    run = resumable_run(out, KIND, options, resume)
    if run is not None:
        tok, shape = HFTokenizer(out), model_config(run["train"]["arch"], None, **run["model"])
    else:
        tok = _tokenizer(tokenizer, pairs, out, vocab_size)
        shape = model_config(options["arch"], preset,
                             **{**(model_options or {}), "vocab_size": tok.vocab_size})  # fmt: skip
    end = end_id(tok)
    limit = shape.context - 1  # room for the end token (source) or the start token (target)
    sources, cut_s = _encode(tok, pairs.sources, limit)
    targets, cut_t = _encode(tok, pairs.targets, limit)
    if cut_s or cut_t:
        warnings.warn(
            f"{cut_s} sources and {cut_t} targets were longer than {limit} tokens and were cut "
            "(raise --context to keep them whole)",
            TruncationWarning,
            stacklevel=3,
        )
    valid = None
    if held_out is not None:
        valid_sources, _ = _encode(tok, held_out.sources, limit)
        valid_targets, _ = _encode(tok, held_out.targets, limit)
        valid = validation_batches(valid_sources, valid_targets, config.batch_size, end)
    torch.manual_seed(config.seed)
    model = build_model(options["arch"], shape).to(device)
    batches = PairBatches(sources, targets, config.batch_size, end, config.seed)
    objective = Seq2Seq(batches, valid, device, label_smoothing=options["label_smoothing"],
                        eval_batches=config.eval_batches)  # fmt: skip
    steps_per_epoch = math.ceil(len(sources) / (config.batch_size * config.accumulate))
    total = config.steps or (math.ceil(config.epochs * steps_per_epoch) if config.epochs else 1000)
    if not resume:
        write_run_files(out, KIND, shape, options)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    return Loop(model, objective, optimizer_for(model, config), config, total=total, out=out,
                device=device, weights=ModelWeights(model), resume=resume,
                budget=options["minutes"] * 60 if options["minutes"] else None,
                progress=progress_callback(progress), ylabel="target cross-entropy")  # fmt: skip
