"""Pretrained causal LMs through Hugging Face `transformers` (the torch backend).

`forward_each` steps many independent sequences (the server's requests) in one forward pass:
their KV caches are gathered into one left-padded batch cache, with an attention mask that hides
the padding and each row's own position ids. The batch cache is kept while the same sequences
keep stepping together, so it is rebuilt (one copy of the caches) only when a sequence joins or
leaves, not at every token.

Prefix reuse (as on the llama backend): a fresh state whose prompt begins with tokens another
one-row state holds (a live one, or the last one released, whose keys and values are kept)
starts on a copy of those keys and values and reads only the rest. Copying is cheap next to
reading: a prompt token costs a forward pass through every layer, its keys and values are ~23 KB
to copy (SmolLM2-135M, float16).
"""

from __future__ import annotations

import inspect
import json
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel, State, common_prefix
from lmlab.sampling_defaults import LLAMA_CPP, from_generation_config
from lmlab.text.hf_tokenizer import HFTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class UnreadableModel(LmlabError):
    """The folder's weights or config cannot be read (a damaged cache may be rebuilt)."""


class KVState(State):
    """A transformers KV cache for rows of equal length, or one row of a shared `_Batch`."""

    def __init__(self, batch_size: int, cache) -> None:
        super().__init__(batch_size)
        self.cache = cache  # None while the row lives in `batch`
        self.batch: _Batch | None = None
        self.row = 0
        self.tokens: list[int] = []  # a one-row state: the ids its keys and values hold


@dataclass
class _Batch:
    """One-row states that `forward_each` steps together, and their left-padded shared cache."""

    states: list[KVState]
    cache: object  # a DynamicCache of (B, H, P, D) keys and values; row i's real tokens at the end
    mask: torch.Tensor  # (B, P) long: 1 for a real token, 0 for left padding


class TransformersLM(LanguageModel):
    """A `*ForCausalLM` model folder (config.json, safetensors, tokenizer.json), read on CPU.

    `dtype="auto"` keeps the dtype the weights are stored in (config.json's `dtype`).
    """

    def __init__(self, folder: str | Path, *, dtype: str = "auto", name: str | None = None) -> None:
        from transformers import AutoModelForCausalLM

        from lmlab._offline import quiet_transformers

        folder = Path(folder)
        if dtype != "auto" and dtype not in DTYPES:
            raise LmlabError(f"dtype must be auto or one of {', '.join(DTYPES)}", param="dtype")
        self.name = name or folder.name
        self.tokenizer = HFTokenizer(folder)
        self.sampling_defaults = from_generation_config(folder) or LLAMA_CPP
        try:
            with quiet_transformers():
                self.model = AutoModelForCausalLM.from_pretrained(
                    folder, dtype=DTYPES.get(dtype, "auto"), local_files_only=True
                ).eval()
        except Exception as e:  # safetensors, config and architecture errors all mean "unreadable"
            reason = _first_line(e)
            raise UnreadableModel(f"cannot load a causal LM from {folder}: {reason}") from None
        config = self.model.config
        self.context_length = int(
            getattr(config, "max_position_embeddings", None)
            or getattr(config, "n_positions", None)
            or 1024
        )
        self._vocab_size = int(config.vocab_size)
        # transformers 5.24 renamed the forward argument `past_key_values` to `cache` (the old
        # name is removed in 5.40); earlier releases know only the old one
        arguments = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in arguments else "past_key_values"
        # plain growing caches can be padded and batched; sliding-window layers cannot
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self._batchable = all(type(x) is DynamicLayer for x in DynamicCache(config=config).layers)
        # the same caches hold every position read, so a prefix of them can be shared
        self.reuses_prefixes = self._batchable
        self.reused_tokens = 0  # prompt tokens not read again thanks to prefix reuse
        self._live: weakref.WeakSet[KVState] = weakref.WeakSet()  # one-row states
        self._kept: KVState | None = None  # the last one-row state released

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def new_state(self, batch_size: int = 1) -> KVState:
        from transformers import DynamicCache

        state = KVState(batch_size, DynamicCache(config=self.model.config))
        if batch_size == 1:
            self._live.add(state)
        return state

    @torch.inference_mode()
    def release(self, state: KVState) -> None:
        """Free the state; the last one-row state released keeps its keys and values (out of
        any shared batch: one copy) for prefix reuse."""
        if state in self._live and state.length and self.reuses_prefixes:
            self._own_cache(state)
            self._kept = state
        else:
            state.cache = state.batch = None
        self._live.discard(state)

    def forget_released(self) -> None:
        """Drop the kept keys and values (see `LanguageModel.forget_released`)."""
        self._kept = None

    @torch.inference_mode()
    def share_prefix(self, state: KVState, token_ids: list[int]) -> int:
        """A fresh state starts on a copy of the keys and values of the longest prefix of
        `token_ids` (all but the last token) another one-row state holds."""
        if state.length or not self.reuses_prefixes or len(token_ids) < 2:
            return 0
        best, source = 0, None
        for other in self._sources():
            n = common_prefix(other.tokens, token_ids[:-1])
            if n > best:
                best, source = n, other
        if source is None:
            return 0
        from transformers import DynamicCache

        prefix = [(k[:, :, :best], v[:, :, :best]) for k, v in self._row_kv(source)]
        rows = state.batch_size
        layers = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix]
        state.cache = DynamicCache(layers, config=self.model.config)  # copies
        state.length = best
        if rows == 1:
            state.tokens = token_ids[:best]
        self.reused_tokens += best * rows
        return best

    def _sources(self) -> list[KVState]:
        """The one-row states whose keys and values can be shared: live ones and the kept one."""
        live = [s for s in self._live if s.length]
        return live + ([self._kept] if self._kept is not None else [])

    @torch.inference_mode()
    def forward(
        self, state: KVState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        if not all_positions and state.length == 0:  # scoring wants every position: no skipping
            rows = token_ids.tolist()
            if all(row == rows[0] for row in rows[1:]):
                token_ids = token_ids[:, self.share_prefix(state, rows[0]) :]
        self._own_cache(state)
        if state.batch_size == 1:
            state.tokens += token_ids[0].tolist()
        out = self.model(
            input_ids=token_ids,
            **{self._cache_arg: state.cache},
            use_cache=True,
            logits_to_keep=0 if all_positions else 1,  # skip the LM head for earlier prompt tokens
        )
        state.length += token_ids.shape[1]
        logits = out.logits.float()
        return logits if all_positions else logits[:, -1]

    def can_truncate(self) -> bool:
        """Yes, unless the model's cache has sliding-window layers."""
        return self._batchable

    @torch.inference_mode()
    def truncate(self, state: KVState, length: int) -> None:
        """Drop the keys and values of positions `length` on (out of any shared batch)."""
        self._own_cache(state)
        if length < state.length:  # a negative count: what every transformers release reads
            state.cache.crop(length - state.length)
        del state.tokens[length:]
        state.length = length

    def can_step(self, state: KVState) -> bool:
        """Every state can, unless the model's cache has sliding-window layers (not paddable)."""
        return self._batchable

    @torch.inference_mode()
    def step_each(self, states: list[KVState], token_ids: list[list[int]]) -> torch.Tensor:
        """One token for each row of the shared batch of `states`: (B, V) logits."""
        batch = self._batch(states)
        B = len(states)
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(B, 1)], dim=1)  # (B, P + 1)
        # each row's token sits at its own position, whatever padding precedes it
        positions = torch.tensor([[s.length] for s in states])  # (B, 1)
        out = self.model(
            input_ids=torch.tensor(token_ids),
            attention_mask=batch.mask,
            position_ids=positions,
            **{self._cache_arg: batch.cache},
            use_cache=True,
            logits_to_keep=1,
        )
        for s, ids in zip(states, token_ids, strict=True):
            s.length += 1
            s.tokens += ids
        return out.logits[:, -1].float()

    def _batch(self, states: list[KVState]) -> _Batch:
        """The shared cache of `states`: the last one if it holds exactly these rows in this
        order, else a new one, left-padded to the longest row."""
        last = states[0].batch
        if last is not None and last.states == states and all(s.batch is last for s in states):
            return last
        from transformers import DynamicCache

        P = max(s.length for s in states)
        rows = [self._row_kv(s) for s in states]  # per state: per layer (keys, values)

        def padded(layer: int, kv: int) -> torch.Tensor:
            # (1, H, L, D) each -> (B, H, P, D), zeros on the left of shorter rows
            parts = [r[layer][kv] for r in rows]
            return torch.cat([F.pad(t, (0, 0, P - t.shape[2], 0)) for t in parts])

        layers = [(padded(i, 0), padded(i, 1)) for i in range(len(rows[0]))]
        mask = torch.tensor([[0] * (P - s.length) + [1] * s.length for s in states])
        batch = _Batch(list(states), DynamicCache(layers, config=self.model.config), mask)
        for row, s in enumerate(states):
            s.batch, s.row, s.cache = batch, row, None
        return batch

    def _row_kv(self, state: KVState) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A one-row state's (1, H, length, D) keys and values, per layer (views, no copy)."""
        if state.batch is None:
            return [(x.keys, x.values) for x in state.cache.layers]
        start = state.batch.mask.shape[1] - state.length  # its left padding
        rows = slice(state.row, state.row + 1)
        return [
            (x.keys[rows, :, start:], x.values[rows, :, start:]) for x in state.batch.cache.layers
        ]

    def _own_cache(self, state: KVState) -> None:
        """Give a row that lives in a shared batch its own cache again (for `forward`)."""
        if state.batch is None:
            return
        from transformers import DynamicCache

        state.cache = DynamicCache(self._row_kv(state), config=self.model.config)  # copies
        state.batch = None


def is_causal_lm_folder(folder: Path) -> bool:
    """Whether config.json names a causal-LM architecture (not an encoder such as BERT)."""
    architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
