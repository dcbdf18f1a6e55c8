"""LoRA fine-tuning of a pretrained causal LM (a transformers folder or a GGUF file).

Every linear layer of the base model except its output layer gets a low-rank update
W + (alpha / r) · B A (Hu et al. 2021, via peft); only A and B learn, by the next-token
cross-entropy on random windows of the text, with the language-model trainer's pieces (AdamW,
warm-up then cosine, gradient clipping, seeding). The run directory keeps the adapter alone (a few
megabytes for a 135M model) and names its base model; `lmlab.load_lm(RUN)` puts them together.

  lmlab.json           {"kind": "lora-lm", "base": SPEC, "lora": {r, alpha, dropout}, "train": ...}
  adapter.safetensors  the A and B matrices
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.home import atomic_file, atomic_write_text
from lmlab.lm.transformers_lm import TransformersLM
from lmlab.models import RUN_FILE, resolve
from lmlab.training import (
    Batches,
    TrainConfig,
    encode_corpus,
    learning_rate,
    optimizer_for,
    pick_device,
)

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
    progress: bool = True,
) -> dict[str, Any]:
    """Train LoRA adapters of the causal LM `base` on text files; write a run directory.

    Args:
        base: a bundled name (smollm2-135m-instruct), a .gguf file or a transformers folder.
        corpus: UTF-8 text files.
        out: the run directory (lmlab.json, adapter.safetensors).
        context: tokens per training window.
        r, alpha, dropout: the LoRA rank, scale (alpha / r) and dropout.
        config: steps, batch_size, lr, warmup, seed, ... (TrainConfig; default lr 2e-4).

    Returns:
        {"out", "steps", "first_loss", "train_loss", "seconds"}.

    Example:
        >>> train_lora("smollm2-135m-instruct", ["letters.txt"], "runs/letters",
        ...            config=TrainConfig(steps=200, lr=2e-4, batch_size=4))
        >>> lmlab.generate(lmlab.load_lm("runs/letters"), "Dear Sir,").text
    """
    from tqdm.auto import tqdm

    from lmlab.text.tokenizer_training import read_corpus

    config = config or TrainConfig(lr=2e-4, steps=100, warmup=10, weight_decay=0.0)
    out = Path(out)
    if (out / RUN_FILE).exists():
        raise LmlabError(f"{out} already holds a run: give another --out")
    torch.manual_seed(config.seed)
    lm = TransformersLM(_base_folder(str(base)), dtype="float32")
    model = add_adapters(lm.model, r, alpha, dropout).to(pick_device(config.device))
    device = next(model.parameters()).device
    context = min(context, lm.context_length)
    ids = encode_corpus(lm.tokenizer, read_corpus(corpus))
    batches = Batches(ids, config.batch_size, context, streams=False, seed=config.seed)
    total = config.steps or 100
    optimizer = optimizer_for(model, config)
    bar = tqdm(total=total, disable=not progress, unit="step", leave=False)
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(total):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config, total)
        window, _ = batches.next()  # (B, T+1): read 0..T-1, predict 1..T
        window = window.to(device)
        logits = model(input_ids=window[:, :-1]).logits
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), window[:, 1:].flatten())
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise LmlabError(f"the loss became {losses[-1]} at step {step + 1}: lower --lr")
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    _save(model, out, base, {"r": r, "alpha": alpha, "dropout": dropout}, config, context)
    return {"out": str(out), "steps": total, "first_loss": losses[0], "train_loss": losses[-1],
            "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip


def _save(model, out: Path, base, lora: dict, config: TrainConfig, context: int) -> None:
    from safetensors.torch import save_file

    ref = resolve(base)
    spec = str(base) if str(base) == ref.name else str(ref.path.resolve())
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if "lora_" in k}
    with atomic_file(out / "adapter.safetensors") as tmp:
        save_file(state, str(tmp))
    train = {**asdict(config), "context": context}
    run = {"kind": KIND, "base": spec, "lora": lora, "train": train}
    atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")


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
