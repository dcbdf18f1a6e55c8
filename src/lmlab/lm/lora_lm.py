"""LoRA fine-tuning of a pretrained causal LM (a transformers folder or a GGUF file).

Every linear layer of the base model except its output layer gets a low-rank update
W + (alpha / r) · B A (Hu et al. 2021, via peft); only A and B learn, by the next-token
cross-entropy on random windows of the text, in the one training loop (lmlab.training): AdamW,
warm-up then cosine, accumulation, clipping, dtype, early stopping on a validation text,
checkpoints, Ctrl-C and exact --resume. The run directory keeps the adapter alone (a few
megabytes for a 135M model) and names its base model; `lmlab.load_lm(RUN)` puts them together.

  lmlab.json           {"kind": "lora-lm", "base": SPEC, "lora": {r, alpha, dropout}, "train": ...}
  adapter.safetensors  the A and B matrices (with validation: those of the best evaluation)
  checkpoint/, metrics.jsonl, loss.png   as for every run trained here
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.home import atomic_write_text
from lmlab.lm.transformers_lm import TransformersLM
from lmlab.models import RUN_FILE, resolve
from lmlab.training.results import TrainConfig, TrainResult

KIND = "lora-lm"


def _base_folder(spec: str) -> Path:
    """The transformers folder of a causal LM spec (a GGUF file is converted once, cached)."""
    ref = resolve(spec)
    if ref.kind == "gguf":
        from lmlab.lm.gguf_cache import converted_folder

        return converted_folder(ref.path)
    if ref.kind != "hf":
        raise LmlabError(f"{spec} is not a pretrained causal LM (a .gguf file or a folder)")
    return ref.path


def add_adapters(model: nn.Module, r: int, alpha: float, dropout: float) -> nn.Module:
    """Inject LoRA into every linear layer but the output layer; only the adapters train."""
    from peft import LoraConfig, inject_adapter_in_model

    output = model.get_output_embeddings()
    targets = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not output]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    model = inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def train_lora(
    base: str | Path,
    corpus: Sequence[str | Path],
    out: str | Path,
    *,
    context: int = 256,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.05,
    config: TrainConfig | None = None,
    valid: str | Path | None = None,
    valid_fraction: float | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train LoRA adapters of the causal LM `base` on text files; write a run directory.

    Args:
        base: a bundled name (smollm2-135m-instruct), a .gguf file or a transformers folder.
        corpus: UTF-8 text files.
        out: the run directory (lmlab.json, adapter.safetensors, checkpoint/, metrics.jsonl).
        context: tokens per training window.
        r, alpha, dropout: the LoRA rank, scale (alpha / r) and dropout.
        config: steps or epochs, batch_size, accumulate, lr, warmup, patience, dtype, seed, ...
            (TrainConfig; default 100 steps at lr 2e-4).
        valid: a validation text file; or `valid_fraction`, the last fraction of the corpus
            (validation every eval_every steps, early stopping with patience, best adapters).
        resume: continue the run in `out` from its checkpoint, exactly.
        progress: a progress bar (True), none (False), or a callback of the loop's events.
        on_step: called with the step number after every optimizer step.

    Returns:
        A TrainResult; its history holds the logged losses (metrics.jsonl).

    Example:
        >>> train_lora("smollm2-135m-instruct", ["letters.txt"], "runs/letters",
        ...            config=TrainConfig(steps=200, lr=2e-4, batch_size=4))
        >>> lmlab.generate(lmlab.load_lm("runs/letters"), "Dear Sir,").text
    """
    from lmlab.lm.neural.scoring import encode_corpus
    from lmlab.training import lm_setup as setup
    from lmlab.training.checkpoint import CHECKPOINT, TrainableWeights
    from lmlab.training.devices import device_for_rank, pick_device, pick_dtype, start_distributed
    from lmlab.training.loop import Loop
    from lmlab.training.objectives.causal import AdapterCausalLM, Batches
    from lmlab.training.optim import optimizer_for
    from lmlab.training.progress import progress_callback

    config = config or TrainConfig(lr=2e-4, steps=100, warmup=10, weight_decay=0.0)
    out = Path(out)
    rank, world = start_distributed()  # under torchrun: one shard of the text per process
    device = device_for_rank(pick_device(config.device), rank, world)
    config = replace(config, dtype=pick_dtype(config.dtype, device))
    setup.check_config(config, valid, valid_fraction)
    lora = {"r": r, "alpha": alpha, "dropout": dropout}
    if r < 1 or context < 2:
        raise LmlabError("the LoRA rank must be at least 1 and the context at least 2 tokens")
    if resume:
        if not (out / CHECKPOINT).exists():
            raise LmlabError(f"nothing to resume in {out}: it has no checkpoint")
    elif (out / RUN_FILE).exists() or (out / CHECKPOINT).exists():
        raise LmlabError(f"{out} already holds a run: give another --out, or --resume")
    created = setup.CreatedFiles(out)
    try:
        torch.manual_seed(config.seed)
        lm = TransformersLM(_base_folder(str(base)), dtype="float32")
        model = add_adapters(lm.model, r, alpha, dropout).to(device)
        context = min(context, lm.context_length)
        run = {
            "kind": KIND,
            "base": _spec(base),
            "lora": lora,
            "train": {
                **asdict(config),
                "context": context,
                "valid": str(valid or ""),
                "valid_fraction": valid_fraction,
                "corpus": [str(p) for p in corpus],
            },
        }
        if resume:
            _check_resume(out, run)
        texts, valid_text = setup.split_corpus(corpus, valid, valid_fraction)
        ids = encode_corpus(lm.tokenizer, texts)
        valid_ids = encode_corpus(lm.tokenizer, [valid_text]) if valid_text is not None else None
        if valid_ids is not None and len(valid_ids) < context + 1:
            raise LmlabError(
                f"the validation text has {len(valid_ids)} tokens, fewer than one window of "
                f"{context + 1}: hold out more (--valid-fraction) or lower --context"
            )
        shard = ids[rank * len(ids) // world : (rank + 1) * len(ids) // world]
        batches = Batches(shard, config.batch_size, context, streams=False, seed=config.seed + rank)
        per_step = config.batch_size * context * config.accumulate
        total = config.steps or (
            math.ceil(config.epochs * len(ids) / per_step) if config.epochs else 100
        )
        optimizer = optimizer_for(model, config)
        if not resume and rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
            (out / "metrics.jsonl").unlink(missing_ok=True)
        objective = AdapterCausalLM(
            model, batches, valid_ids, device, eval_windows=config.eval_batches * config.batch_size
        )
        net = model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(model)
        loop = Loop(
            model,
            objective,
            optimizer,
            config,
            total=total,
            out=out,
            device=device,
            weights=TrainableWeights(model),
            best_file="adapter.safetensors",
            net=net,
            rank=rank,
            world=world,
            resume=resume,
            progress=progress_callback(progress),
            on_step=on_step,
        )
        return loop.run()
    except BaseException:
        if rank == 0 and not resume and not (out / CHECKPOINT).exists():
            created.remove()  # failed before its first checkpoint: nothing to resume
        raise
    finally:
        if world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _spec(base) -> str:
    """How the run names its base model: a bundled name as given, else an absolute path."""
    ref = resolve(base)
    return str(base) if str(base) == ref.name else str(ref.path.resolve())


def _check_resume(out: Path, run: dict) -> None:
    """--resume needs the run's own base model, adapter shape and training options."""
    try:
        before = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        raise LmlabError(f"{out} has no readable {RUN_FILE}: cannot resume") from None
    changed = [k for k in ("kind", "base", "lora") if before.get(k) != run[k]]
    changed += sorted(k for k, v in run["train"].items() if before.get("train", {}).get(k) != v)
    if changed:
        raise LmlabError(f"--resume needs the options of the run in {out}; these differ: "
                         f"{', '.join(changed)}")  # fmt: skip


def load_run(folder: str | Path, **options) -> TransformersLM:
    """The base model with the run's adapters (the RUN_LOADERS entry of "lora-lm").

    Example:
        >>> lm = lmlab.load_lm("runs/letters")
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    run = json.loads((folder / RUN_FILE).read_text())
    lm = TransformersLM(_base_folder(run["base"]), name=folder.name, **options)
    lora = run["lora"]
    add_adapters(lm.model, lora["r"], lora["alpha"], lora["dropout"]).eval()
    state = load_file(str(folder / "adapter.safetensors"))
    missing, unexpected = lm.model.load_state_dict(state, strict=False)
    if unexpected or any("lora_" in k for k in missing):
        raise LmlabError(f"the adapter in {folder} does not fit its base model {run['base']}")
    return lm
