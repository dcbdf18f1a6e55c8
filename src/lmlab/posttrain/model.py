"""The model side of post-training: the base causal LM (a bundled name, a GGUF file, a
transformers folder, or a run tuned here, its adapters merged), LoRA or full training, the
per-token log-probabilities the objectives need, and the loader of a tuned run.

A tuned run's folder:
  lmlab.json   {"kind": "sft" | "dpo", "base": SPEC, "lora": {r, alpha, dropout} | null, ...}
  adapter.safetensors (LoRA) or model.safetensors (--full), checkpoint/, metrics.jsonl, loss.png
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.models import resolve
from lmlab.runs import RUN_FILE


def load_base(spec: str | Path, *, dtype: str = "float32", name: str | None = None):
    """The causal LM `spec` as a TransformersLM whose model has no adapters (a tuned run's
    adapters are merged into its weights); a one-line error for anything else."""
    from lmlab.lm.lora_lm import _base_folder
    from lmlab.lm.transformers_lm import TransformersLM, is_causal_lm_folder

    ref = resolve(spec)
    if ref.kind == "run":
        from lmlab.runs import load_run

        lm = load_run(ref.path, "lm", dtype=dtype)
        if not isinstance(lm, TransformersLM):
            raise LmlabError(
                f"{spec} is not a pretrained transformers causal LM (post-training takes a "
                "bundled model, a .gguf file, a transformers folder or a run tuned from one)"
            )
        merge_adapters(lm.model)
        return lm
    if ref.kind == "hf" and not is_causal_lm_folder(ref.path):
        raise LmlabError(f"{spec} is not a causal language model (it is an encoder)")
    if ref.kind not in ("hf", "gguf"):
        raise LmlabError(f"{spec} is not a pretrained causal LM (a .gguf file or a folder)")
    return TransformersLM(_base_folder(str(spec)), dtype=dtype, name=name)


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its linear layer and drop the adapter (in place)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    if hasattr(model, "peft_config"):  # no adapter left: new ones start a fresh config
        del model.peft_config
    return model


def set_adapters(model: nn.Module, enabled: bool) -> None:
    """Switch every LoRA adapter on or off: off, the model is its base (DPO's reference)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.enable_adapters(enabled)


def trainable(model: nn.Module, lora: dict | None) -> nn.Module:
    """LoRA adapters on every linear layer but the output layer, or (lora None) every weight."""
    if lora is None:
        model.requires_grad_(True)
        return model
    from lmlab.lm.lora_lm import add_adapters

    return add_adapters(model, lora["r"], lora["alpha"], lora["dropout"])


def token_logps(
    model: nn.Module, ids: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log P(token) of every masked token of `ids` (B, T) given the tokens before it, in row
    order: the output layer runs on those positions only (not on the prompt's)."""
    targets = mask[:, 1:]
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    head = model.get_output_embeddings()
    if decoder is not None and head is not None and not _softcapped(model):
        hidden = decoder(input_ids=ids, attention_mask=attention).last_hidden_state
        logits = head(hidden[:, :-1][targets])
    else:
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1][targets]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, ids[:, 1:][targets][:, None]).squeeze(-1)


def _softcapped(model: nn.Module) -> bool:
    return getattr(model.config, "final_logit_softcapping", None) is not None


def row_sums(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row of mask (B, T), the sum of the values of its masked positions after the first."""
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask[:, 1:])
    out = values.new_zeros(mask.shape[0])
    return out.index_add(0, rows[mask[:, 1:]], values)


def run_weights_file(lora: dict | None) -> str:
    return "adapter.safetensors" if lora is not None else "model.safetensors"


def load_tuned(folder: str | Path, **options):
    """A tuned run as a language model: its base (tuned runs merged) with its adapters or its
    own weights (the RUN_LOADERS entry of "sft" and "dpo")."""
    from safetensors.torch import load_file

    folder = Path(folder)
    run = json.loads((folder / RUN_FILE).read_text())
    lm = load_base(run["base"], dtype=options.pop("dtype", "auto"), name=folder.name)
    lm.name = folder.name
    lora = run.get("lora")
    if lora is not None:
        trainable(lm.model, lora).eval()
        lm.model.requires_grad_(False)
    path = folder / run_weights_file(lora)
    if lora is None:
        from lmlab.training.checkpoint import ModelWeights

        ModelWeights(lm.model).load(path)
        return lm
    try:
        state = load_file(str(path))
    except Exception as e:
        raise LmlabError(f"cannot load weights {path}: {str(e).splitlines()[0]}") from None
    state = {k: v.to(lm.model.dtype) for k, v in state.items()}
    missing, unexpected = lm.model.load_state_dict(state, strict=False)
    if unexpected or any("lora_" in k for k in missing):
        raise LmlabError(f"the adapter in {folder} does not fit its base model {run['base']}")
    return lm
