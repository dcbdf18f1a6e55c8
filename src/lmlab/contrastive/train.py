"""`train_simcse()` and `train_contrastive()`: a sentence encoder tuned by a contrastive loss.

The encoder (the bundled all-minilm-l6-v2, a transformers encoder folder, a BERT run of
`lmlab train bert`, or a run of these commands) is pooled as when it embeds (mean over real
tokens unless its folder says otherwise) and trained end to end in the one training loop on
the contrastive objective (training/objectives/contrastive.py): warm-up then decay, clipping,
bfloat16 where the CPU computes in it, checkpoints, exact resume, metrics.jsonl, loss.png.

The run directory is an encoder folder with a run file, {"kind": "sentence-encoder",
"base": "transformers" or "bert", "pooling", "encoder", "train": options}: for a transformers
encoder its config.json, tokenizer files and pooling config with the tuned weights in
model.safetensors (the loop writes the best weights by validation, else the last, there; it
loads with transformers and sentence-transformers too); for a BERT run its config.json and
tokenizer with "model" (the BERT's shape) in the run file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from lmlab.contrastive.data import Pairs, read_pairs, read_scored_pairs, read_sentences
from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER
from lmlab.runs import RUN_FILE, read_run
from lmlab.training.results import TrainConfig, TrainResult

KIND = "sentence-encoder"
LOSSES = ("auto", "mnr", "cosent")
# Defaults of the optimisation, by command; options given override them.
DEFAULTS: dict[str, dict[str, Any]] = {
    # SimCSE's unsupervised BERT-base recipe: batch 64, lr 3e-5, texts cut to 32 tokens
    "simcse": {"batch_size": 64, "lr": 3e-5, "warmup": 0, "epochs": 1.0},
    # sentence-transformers' fine-tuning recipe: batch 16, lr 2e-5, 100 warm-up steps
    "contrastive": {"batch_size": 16, "lr": 2e-5, "warmup": 100, "epochs": 1.0},
}
COMMON = {"min_lr": 0.0, "weight_decay": 0.01, "beta2": 0.999, "log_every": 10,
          "eval_every": 500}  # fmt: skip
MAX_LENGTH = {"simcse": 32, "contrastive": 128}


def default_config(command: str, **given: Any) -> TrainConfig:
    """The TrainConfig of `command` (simcse or contrastive): its defaults, then `given`."""
    options = {**COMMON, **DEFAULTS[command], **{k: v for k, v in given.items() if v is not None}}
    if "steps" in given and given["steps"] is not None and "epochs" not in given:
        options["epochs"] = None  # steps given: they decide
    return TrainConfig(**options)


def train_simcse(
    sentences_file: str | Path,
    out: str | Path,
    *,
    encoder: str | Path = DEFAULT_ENCODER,
    temperature: float = 0.05,
    max_length: int | None = None,
    valid: str | Path | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Unsupervised SimCSE: each sentence twice through dropout, the batch's others negatives.

    Args:
        sentences_file: one sentence per line.
        out: the run directory (an encoder: see the module's docstring).
        encoder: all-minilm-l6-v2, a transformers encoder folder, or a run (bert, or another
            sentence-encoder run).
        temperature: of the InfoNCE loss (SimCSE's 0.05).
        max_length: tokens per sentence, special ones included (default 32, as SimCSE).
        valid: an STS file to validate on (Spearman; the best weights are kept).
        config: optimisation (default_config("simcse"): batch 64, lr 3e-5, one epoch).
        resume: continue the run in `out` exactly.
        progress: a bar (True), none, or a callback of the loop's events.

    Example:
        >>> train_simcse("wiki-sentences.txt", "runs/simcse", encoder="runs/bert")
    """
    sentences = read_sentences(sentences_file)
    config = config or default_config("simcse")
    options = {"command": "simcse", "train": str(sentences_file), "temperature": temperature}
    return _train("simcse", [sentences], None, out, encoder=encoder, options=options,
                  max_length=max_length or MAX_LENGTH["simcse"], valid=valid, config=config,
                  resume=resume, progress=progress, temperature=temperature)  # fmt: skip


def train_contrastive(
    pairs_file: str | Path,
    out: str | Path,
    *,
    encoder: str | Path = DEFAULT_ENCODER,
    loss: str = "auto",
    temperature: float = 0.05,
    scale: float = 20.0,
    max_length: int | None = None,
    valid: str | Path | None = None,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Supervised contrastive tuning on pairs: in-batch negatives (with hard negatives when the
    file has a third text column), or CoSENT on scored pairs.

    Args:
        pairs_file: text1, text2[, hard negative | score] rows (.tsv, .csv) or an STS file.
        out: the run directory (an encoder).
        encoder: as train_simcse.
        loss: auto (cosent for scored pairs, else mnr), mnr or cosent.
        temperature: InfoNCE's (mnr); scale: CoSENT's (20).
        max_length: tokens per text (default 128).
        valid: an STS file to validate on (Spearman; the best weights are kept).
        config: optimisation (default_config("contrastive"): batch 16, lr 2e-5, 100 warm-up
            steps, one epoch).

    Example:
        >>> train_contrastive("stsb/sts-train.csv", "runs/minilm-sts")
    """
    if loss not in LOSSES:
        raise LmlabError(f"--loss must be one of {', '.join(LOSSES)}, not {loss!r}", param="loss")
    pairs = read_pairs(pairs_file)
    mode = loss if loss != "auto" else ("cosent" if pairs.scores is not None else "mnr")
    if mode == "cosent" and pairs.scores is None:
        raise LmlabError(f"--loss cosent needs scored pairs; {pairs_file} has no score column")
    if mode == "mnr" and pairs.scores is not None:
        raise LmlabError(
            f"{pairs_file} has scores: use --loss cosent (or give pairs without scores for mnr)"
        )
    columns = [pairs.text1, pairs.text2] + ([pairs.negatives] if pairs.negatives else [])
    config = config or default_config("contrastive")
    options = {"command": "contrastive", "train": str(pairs_file), "loss": mode,
               "temperature": temperature, "scale": scale}  # fmt: skip
    return _train(mode, columns, pairs.scores, out, encoder=encoder, options=options,
                  max_length=max_length or MAX_LENGTH["contrastive"], valid=valid, config=config,
                  resume=resume, progress=progress, temperature=temperature,
                  scale=scale)  # fmt: skip


def _train(mode, columns, scores, out, *, encoder, options, max_length, valid, config, resume,
           progress, temperature=0.05, scale=20.0) -> TrainResult:  # fmt: skip
    from lmlab.training.devices import pick_device, pick_dtype
    from lmlab.training.lm_setup import CreatedFiles, check_config

    out = Path(out)
    if config.batch_size < 2:
        raise LmlabError(
            "--batch-size must be at least 2: the other texts of a batch are the negatives",
            param="batch_size",
        )
    if not temperature > 0:
        raise LmlabError("--temperature must be positive", param="temperature")
    if max_length < 3:
        raise LmlabError("--max-length must be at least 3 tokens", param="max_length")
    rows = len(columns[0])
    if rows < 2:
        raise LmlabError(f"{options['train']} holds {rows} row: a batch needs at least two")
    device = pick_device(config.device)
    config = replace(config, dtype=pick_dtype(config.dtype, device))
    check_config(config, None, None)
    held_out = read_scored_pairs(valid) if valid else None
    options = {**options, **{k: v for k, v in asdict(config).items() if k != "log_every"},
               "encoder": str(encoder), "max_length": max_length,
               "valid": str(valid or "")}  # fmt: skip
    created = CreatedFiles(out)
    try:
        loop = _setup(mode, columns, scores, held_out, out, encoder, options, config, device,
                      max_length, resume, progress, temperature, scale)  # fmt: skip
        return loop.run()
    except BaseException:
        from lmlab.training.checkpoint import CHECKPOINT

        if not resume and not (out / CHECKPOINT).exists():
            created.remove()
        raise


def _setup(mode, columns, scores, held_out: Pairs | None, out: Path, encoder, options, config,
           device, max_length, resume, progress, temperature, scale):  # fmt: skip
    from tokenizers import Tokenizer

    from lmlab.classify.finetune import PooledEncoder, _copy_encoder_files, _encoder_folder
    from lmlab.home import atomic_write_text
    from lmlab.training.checkpoint import ModelWeights, resumable_run
    from lmlab.training.loop import Loop
    from lmlab.training.objectives.contrastive import Contrastive, RowBatches
    from lmlab.training.optim import optimizer_for
    from lmlab.training.progress import progress_callback

    resumable_run(out, KIND, options, resume)
    source_folder = _encoder_folder(str(encoder))
    torch.manual_seed(config.seed)
    model = PooledEncoder(source_folder).to(device)
    tokenizer = Tokenizer.from_file(str(source_folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(min(max_length, model.window))

    def ids(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tokenizer.encode_batch(texts)]

    token_columns = [ids(column) for column in columns]
    lengths = [sum(len(c[i]) for c in token_columns) for i in range(len(token_columns[0]))]
    source = RowBatches(lengths, config.batch_size, config.seed)
    valid = None
    if held_out is not None:
        valid = (ids(held_out.text1), ids(held_out.text2), held_out.scores)
    objective = Contrastive(mode, token_columns, source, model.pad_id, device, scores=scores,
                            temperature=temperature, scale=scale, valid=valid)  # fmt: skip
    per_epoch = math.ceil(len(lengths) / (config.batch_size * config.accumulate))
    total = config.steps or max(1, math.ceil((config.epochs or 1.0) * per_epoch))
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        _copy_encoder_files(source_folder, out)  # config, tokenizer, pooling
        run = {"kind": KIND, "base": "bert" if model.ours else "transformers",
               "pooling": model.pooling, "encoder": str(encoder), "train": options}  # fmt: skip
        if model.ours:
            run["model"] = read_run(source_folder)["model"]
        atomic_write_text(out / RUN_FILE, _json(run))
        (out / "metrics.jsonl").unlink(missing_ok=True)
    return Loop(model, objective, optimizer_for(model, config), config, total=total, out=out,
                device=device, weights=ModelWeights(model.body), resume=resume,
                progress=progress_callback(progress, "texts_s"),
                ylabel="contrastive loss")  # fmt: skip


def _json(data: dict) -> str:
    import json

    return json.dumps(data, indent=2) + "\n"
