"""`train_sft`, `train_dpo` and `train_reward`: post-training a causal LM on the one loop.

Each reads and checks its data first (an error names the line; nothing is written), loads the
base (a bundled name, a GGUF file, a transformers folder or a run tuned here), tokenizes the
rows through the chat template, drops the rows longer than `max_length` tokens (counted in
lmlab.json and in a warning), holds out a validation split, and runs the loop (loop.py):
checkpoints, exact --resume, metrics.jsonl, loss.png, early stopping on the held-out rows.
"""

from __future__ import annotations

import copy
import json
import math
import random
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch

from lmlab.errors import LmlabError
from lmlab.home import atomic_write_text
from lmlab.posttrain import data as D
from lmlab.runs import RUN_FILE
from lmlab.training.results import TrainConfig, TrainResult

LORA = {"r": 8, "alpha": 16, "dropout": 0.05}


class DroppedRowsWarning(UserWarning):
    """Rows longer than --max-length tokens were left out of training."""


def train_sft(
    data: str | Path,
    out: str | Path,
    *,
    base: str | Path = "smollm2-135m-instruct",
    lora: dict | bool | None = True,
    config: TrainConfig | None = None,
    valid: str | Path | None = None,
    valid_fraction: float | None = 0.1,
    max_length: int = 1024,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Instruction-tune `base` on conversations: the loss counts the assistant's tokens only.

    Args:
        data: JSONL rows {"messages": [...]} (OpenAI's fine-tuning format) or
            {"prompt": ..., "completion": ...}.
        out: the run directory; it loads as a language model (`lmlab.load_lm(out)`).
        base: a bundled name, a .gguf file, a transformers folder, or a run tuned here.
        lora: True (rank 8, alpha 16, dropout 0.05), a dict {r, alpha, dropout}, or False
            (every weight trains: --full).
        config: steps or epochs, batch_size, lr, warmup, eval_every, patience, seed, ...
        valid: a JSONL file of held-out rows; else `valid_fraction` of the rows (seeded).
        max_length: rows with more tokens are dropped (and counted).

    Example:
        >>> train_sft("chats.jsonl", "runs/sft", config=TrainConfig(steps=100, batch_size=4))
        >>> lmlab.chat("runs/sft", [{"role": "user", "content": "Hi"}]).text
    """
    rows = D.chat_rows(data)
    valid_rows = D.chat_rows(valid) if valid is not None else None

    def objective(lm, model, train, held, config, device):
        from lmlab.training.objectives.sft import SFT

        encode = [(D.encode_conversation(lm.tokenizer, r)) for r in train]
        encoded = [e for e in encode if any(e.mask)]
        held = [D.encode_conversation(lm.tokenizer, r) for r in held]
        return encoded, [e for e in held if any(e.mask)], lambda t, v: SFT(
            model, t, v, config.batch_size, _pad_id(lm), device, seed=config.seed,
            eval_batches=config.eval_batches)  # fmt: skip

    return _train("sft", rows, valid_rows, out, base=base, lora=lora, config=config,
                  valid=valid, valid_fraction=valid_fraction, max_length=max_length,
                  resume=resume, progress=progress, setup=objective,
                  length=lambda e: len(e.ids), record={"data": str(data)})  # fmt: skip


def train_dpo(
    data: str | Path,
    out: str | Path,
    *,
    base: str | Path = "smollm2-135m-instruct",
    beta: float = 0.1,
    lora: dict | bool | None = True,
    config: TrainConfig | None = None,
    valid: str | Path | None = None,
    valid_fraction: float | None = 0.1,
    max_length: int = 1024,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Direct preference optimisation (Rafailov et al. 2023) of `base` on preference pairs.

    Args:
        data: JSONL rows {"prompt", "chosen", "rejected"} (TRL's format: strings, or a
            conversation and one assistant message each).
        beta: the strength of the tie to the reference model (the base: with LoRA, the same
            model with its adapters switched off).
        Others as for `train_sft`.

    Logged: the loss, the implicit rewards of the chosen and rejected answers, their margin
    and the preference accuracy, per line and on the held-out pairs (valid_*).
    """
    if not beta > 0:
        raise LmlabError("--beta must be positive")
    rows = D.preference_rows(data)
    valid_rows = D.preference_rows(valid) if valid is not None else None

    def objective(lm, model, train, held, config, device):
        from lmlab.posttrain.model import set_adapters, token_logps
        from lmlab.training.objectives.preference import DPO

        if lora_options is not None:

            def reference(tensors):
                set_adapters(model, False)
                try:
                    return token_logps(model, *tensors)
                finally:
                    set_adapters(model, True)
        else:
            frozen = copy.deepcopy(model).eval().requires_grad_(False)

            def reference(tensors):
                return token_logps(frozen, *tensors)

        pairs = [_encode_pair(lm.tokenizer, p) for p in train]
        held = [_encode_pair(lm.tokenizer, p) for p in held]
        return pairs, held, lambda t, v: DPO(
            model, t, v, config.batch_size, _pad_id(lm), device, beta=beta, reference=reference,
            seed=config.seed, eval_batches=config.eval_batches)  # fmt: skip

    lora_options = _lora(lora)
    return _train("dpo", rows, valid_rows, out, base=base, lora=lora, config=config,
                  valid=valid, valid_fraction=valid_fraction, max_length=max_length,
                  resume=resume, progress=progress, setup=objective, length=_pair_length,
                  record={"data": str(data), "beta": beta})  # fmt: skip


def train_reward(
    data: str | Path,
    out: str | Path,
    *,
    base: str | Path = "smollm2-135m-instruct",
    lora: dict | bool | None = True,
    config: TrainConfig | None = None,
    valid: str | Path | None = None,
    valid_fraction: float | None = 0.1,
    max_length: int = 1024,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """A Bradley-Terry reward model: a scalar head on the LM's last hidden state of prompt +
    answer, trained so that chosen answers score above rejected ones. The run scores answers
    (`lmlab.posttrain.reward.load_reward`, `lmlab generate --best-of N --reward RUN`).

    Args as for `train_dpo` (no beta).
    """
    rows = D.preference_rows(data)
    valid_rows = D.preference_rows(valid) if valid is not None else None

    def objective(lm, model, train, held, config, device):
        from lmlab.training.objectives.preference import BradleyTerry

        pairs = [_encode_pair(lm.tokenizer, p) for p in train]
        held = [_encode_pair(lm.tokenizer, p) for p in held]
        return pairs, held, lambda t, v: BradleyTerry(
            model, t, v, config.batch_size, _pad_id(lm), device, seed=config.seed,
            eval_batches=config.eval_batches)  # fmt: skip

    return _train("reward", rows, valid_rows, out, base=base, lora=lora, config=config,
                  valid=valid, valid_fraction=valid_fraction, max_length=max_length,
                  resume=resume, progress=progress, setup=objective, length=_pair_length,
                  record={"data": str(data)}, reward_head=True)  # fmt: skip


def _encode_pair(tokenizer, p: D.Preference) -> tuple[D.Encoded, D.Encoded]:
    return (D.encode_answer(tokenizer, p.prompt, p.chosen, p.line),
            D.encode_answer(tokenizer, p.prompt, p.rejected, p.line))  # fmt: skip


def _pair_length(pair) -> int:
    return max(len(pair[0].ids), len(pair[1].ids))


def _pad_id(lm) -> int:
    eos = sorted(lm.tokenizer.eos_ids)
    return eos[0] if eos else 0  # padding is never attended to nor learned


def _lora(lora) -> dict | None:
    if lora is True:
        return dict(LORA)
    if lora is False or lora is None:
        return None
    options = {**LORA, **lora}
    if options["r"] < 1:
        raise LmlabError("the LoRA rank must be at least 1")
    return options


def spec_of(base) -> str:
    """How a run names its base: a bundled name as given, else an absolute path."""
    from lmlab.models import BUNDLED

    return str(base) if str(base) in BUNDLED else str(Path(base).expanduser().resolve())


def _split(rows: list, valid_rows, valid_fraction, seed: int) -> tuple[list, list]:
    """Training and held-out rows: the given file, or a seeded fraction of the rows."""
    if valid_rows is not None:
        return rows, valid_rows
    if not valid_fraction:
        return rows, []
    if not 0 < valid_fraction < 1:
        raise LmlabError("--valid-fraction must be in (0, 1)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = int(len(rows) * valid_fraction)
    held = set(order[:n])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def _train(kind, rows, valid_rows, out, *, base, lora, config, valid, valid_fraction,
           max_length, resume, progress, setup, length, record,
           reward_head: bool = False) -> TrainResult:  # fmt: skip
    """The setup every post-training run shares; `setup` builds the objective."""
    from lmlab.lm.lora_lm import _check_resume
    from lmlab.posttrain.model import load_base, run_weights_file, trainable
    from lmlab.training import lm_setup
    from lmlab.training.checkpoint import CHECKPOINT, ModelWeights, TrainableWeights
    from lmlab.training.devices import pick_device, pick_dtype
    from lmlab.training.loop import Loop
    from lmlab.training.optim import optimizer_for
    from lmlab.training.progress import progress_callback

    config = config or TrainConfig(lr=2e-4 if lora else 2e-5, steps=100, warmup=10,
                                   weight_decay=0.0, batch_size=4)  # fmt: skip
    out = Path(out)
    device = pick_device(config.device)
    config = replace(config, dtype=pick_dtype(config.dtype, device))
    lm_setup.check_config(config, valid, valid_fraction if valid is None else None)
    lora = _lora(lora)
    if max_length < 2:
        raise LmlabError("--max-length must be at least 2 tokens")
    if resume:
        if not (out / CHECKPOINT).exists():
            raise LmlabError(f"nothing to resume in {out}: it has no checkpoint")
    elif (out / RUN_FILE).exists() or (out / CHECKPOINT).exists():
        raise LmlabError(f"{out} already holds a run: give another --out, or --resume")
    train_rows, held_rows = _split(rows, valid_rows, valid_fraction, config.seed)
    if not train_rows:
        raise LmlabError("no rows left to train on after the validation split")
    torch.manual_seed(config.seed)
    lm = load_base(base)
    max_length = min(max_length, lm.context_length)
    model = trainable(lm.model, lora)
    if reward_head:
        from lmlab.posttrain.reward import RewardModel

        model = RewardModel(model)
    model = model.to(device)
    train_set, held_set, make = setup(lm, model, train_rows, held_rows, config, device)
    train_set, dropped = D.drop_long(train_set, max_length, length)
    held_set, dropped_held = D.drop_long(held_set, max_length, length)
    lost = dropped + dropped_held
    if lost:
        lines = ", ".join(map(str, lost[:5])) + (", ..." if len(lost) > 5 else "")
        rows_were = "1 row was" if len(lost) == 1 else f"{len(lost)} rows were"
        warnings.warn(
            f"{rows_were} longer than {max_length} tokens and dropped "
            f"(line{'s' if len(lost) > 1 else ''} {lines}); raise --max-length to keep them",
            DroppedRowsWarning,
            stacklevel=3,
        )
    if not train_set:
        raise LmlabError(f"no training row fits in {max_length} tokens (raise --max-length)")
    total = config.steps or math.ceil((config.epochs or 1) * len(train_set) / config.batch_size)
    run = {
        "kind": kind,
        "base": spec_of(base),
        "lora": lora,
        "train": {
            **asdict(config),
            **record,
            "valid": str(valid or ""),
            "valid_fraction": valid_fraction,
            "max_length": max_length,
            "rows": len(train_set),
            "valid_rows": len(held_set),
            "dropped": len(lost),
        },
    }
    if resume:
        _check_resume(out, run)
    created = lm_setup.CreatedFiles(out)
    try:
        if not resume:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
            (out / "metrics.jsonl").unlink(missing_ok=True)
        objective = make(train_set, held_set)
        weights = TrainableWeights(model) if lora is not None else ModelWeights(model)
        loop = Loop(model, objective, optimizer_for(model, config), config, total=total,
                    out=out, device=device, weights=weights, best_file=run_weights_file(lora),
                    resume=resume, progress=progress_callback(progress, "rows_s"),
                    ylabel="loss")  # fmt: skip
        return loop.run()
    except BaseException:
        if not resume and not (out / CHECKPOINT).exists():
            created.remove()  # failed before its first checkpoint: nothing to resume
        raise
