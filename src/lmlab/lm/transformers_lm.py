"""Pretrained causal LMs through Hugging Face `transformers` (the torch backend)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel, State
from lmlab.text.hf_tokenizer import HFTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class KVState(State):
    """A transformers KV cache for rows of equal length."""

    def __init__(self, batch_size: int, cache) -> None:
        super().__init__(batch_size)
        self.cache = cache


class TransformersLM(LanguageModel):
    """A `*ForCausalLM` model folder (config.json, safetensors, tokenizer.json), read on CPU.

    `dtype="auto"` keeps the dtype the weights are stored in (config.json's `dtype`).
    """

    def __init__(self, folder: str | Path, *, dtype: str = "auto", name: str | None = None) -> None:
        from transformers import AutoModelForCausalLM

        folder = Path(folder)
        if dtype != "auto" and dtype not in DTYPES:
            raise LmlabError(f"dtype must be auto or one of {', '.join(DTYPES)}", param="dtype")
        self.name = name or folder.name
        self.tokenizer = HFTokenizer(folder)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=DTYPES.get(dtype, "auto"), local_files_only=True
            ).eval()
        except Exception as e:  # safetensors, config and architecture errors all mean "unreadable"
            raise LmlabError(f"cannot load a causal LM from {folder}: {_first_line(e)}") from None
        config = self.model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or 1024
        )
        self._vocab_size = int(config.vocab_size)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def new_state(self, batch_size: int = 1) -> KVState:
        from transformers import DynamicCache

        return KVState(batch_size, DynamicCache(config=self.model.config))

    @torch.inference_mode()
    def forward(
        self, state: KVState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        out = self.model(
            input_ids=token_ids,
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=0 if all_positions else 1,  # skip the LM head for earlier prompt tokens
        )
        state.length += token_ids.shape[1]
        logits = out.logits.float()
        return logits if all_positions else logits[:, -1]


def is_causal_lm_folder(folder: Path) -> bool:
    """Whether config.json names a causal-LM architecture (not an encoder such as BERT)."""
    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
