"""GGUF models through llama.cpp (`llama-cpp-python`'s C API): the fast CPU backend.

We drive llama.cpp's batch API ourselves rather than its high-level `Llama` class: each row of a
State is one llama.cpp sequence in a shared (unified) KV cache, so several rows decode in one
`llama_decode` call, and sampling stays in lmlab's decoder like every other model's.

Prefix reuse: a sequence starting with tokens another sequence has already read (a live one, or
the last one released, whose cache cells are kept) shares that sequence's cells for them and
reads only the rest. Chat requests with the same system prompt, the next turn of a
conversation and classification prompts with the same instructions and examples skip most of
their prompt (as vLLM's automatic prefix caching and llama.cpp's server do).
"""

from __future__ import annotations

import ctypes
import logging
import os
import weakref
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from lmlab.errors import LmlabError
from lmlab.lm.base import CacheFull, LanguageModel, State, common_prefix
from lmlab.sampling_defaults import GGUF_KEYS, LLAMA_CPP, from_gguf_metadata
from lmlab.text.tokenizer import Tokenizer


def _llama():
    try:
        import llama_cpp
    except ImportError:
        raise LmlabError(
            "the llama backend needs llama-cpp-python: pip install 'lmlab[llama]' "
            "(or use --backend torch)"
        ) from None
    # llama.cpp's C log is chatty (its warnings include a full cache, which the server handles);
    # llama-cpp-python maps ggml's warning level to logging.ERROR, so only CRITICAL quiets them
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
    return llama_cpp


class _LoadedModel:
    """A model llama.cpp has loaded, freed when its last holder goes: the LanguageModel, or
    its tokenizer kept alone (`load_tokenizer`), whose vocabulary lives inside the model."""

    def __init__(self, lib, pointer) -> None:
        self.pointer = pointer
        weakref.finalize(self, lib.llama_model_free, pointer)


class LlamaCppTokenizer(Tokenizer):
    """The GGUF file's own vocabulary, through llama.cpp."""

    def __init__(self, lib, loaded: _LoadedModel, metadata: dict[str, str]) -> None:
        self._lib, self._loaded = lib, loaded  # the vocabulary is freed with the model
        model = loaded.pointer
        self._vocab = lib.llama_model_get_vocab(model)
        self._n = lib.llama_vocab_n_tokens(self._vocab)
        template = lib.llama_model_chat_template(model, None)
        self.chat_template = template.decode("utf-8") if template else None
        self.bos_token = self._text(lib.llama_vocab_bos(self._vocab))
        self.eos_token = self._text(lib.llama_vocab_eos(self._vocab))
        kind = metadata.get("tokenizer.ggml.model", "gpt2")
        self.word_start = {"llama": "▁", "bert": None}.get(kind, "Ġ")

    def _text(self, token_id: int) -> str | None:
        if token_id < 0:
            return None
        return self._lib.llama_vocab_get_text(self._vocab, token_id).decode("utf-8", "replace")

    @property
    def vocab_size(self) -> int:
        return self._n

    @cached_property
    def special_ids(self) -> frozenset[int]:
        is_control = self._lib.llama_vocab_is_control
        return frozenset(i for i in range(self._n) if is_control(self._vocab, i))

    @cached_property
    def eos_ids(self) -> frozenset[int]:
        is_eog = self._lib.llama_vocab_is_eog
        return frozenset(i for i in range(self._n) if is_eog(self._vocab, i))

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        data = text.encode("utf-8")
        size = len(data) + 8
        while True:
            buf = (self._lib.llama_token * size)()
            n = self._lib.llama_tokenize(
                self._vocab, data, len(data), buf, size, add_special_tokens, True
            )
            if n >= 0:
                return list(buf[:n])
            size = -n

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        if not ids:
            return ""
        tokens = (self._lib.llama_token * len(ids))(*ids)
        size = 16 * len(ids) + 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_detokenize(
                self._vocab, tokens, len(ids), buf, size, False, not skip_special_tokens
            )
            if n >= 0:
                return buf.raw[:n].decode("utf-8", "replace")
            size = -n

    def id_to_token(self, token_id: int) -> str:
        return self._text(token_id) or ""


class SeqState(State):
    """Rows of a LlamaCppLM state: one llama.cpp sequence id each."""

    def __init__(self, seq_ids: list[int]) -> None:
        super().__init__(len(seq_ids))
        self.seq_ids = seq_ids


class LlamaCppLM(LanguageModel):
    """A GGUF model run by llama.cpp on the CPU.

    Args:
        path: the .gguf file.
        context_length: tokens the KV cache holds, shared by all live rows (default: the model's
            training context, at most 8192).
        n_threads: CPU threads for one token at a time: one row decoding (default: all cores).
        n_threads_batch: CPU threads for several tokens at once: prompts, rows decoding
            together (default: n_threads).
        max_batch_size: rows that can decode together (llama.cpp sequences).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        context_length: int | None = None,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        max_batch_size: int = 8,
        name: str | None = None,
    ) -> None:
        lib = self._lib = _llama()
        path = Path(path)
        self.name = name or path.stem
        self.path = path  # the file it runs (the server's start-up line names it)
        lib.llama_backend_init()
        params = lib.llama_model_default_params()
        model = lib.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise LmlabError(f"llama.cpp cannot load {path}: not a valid GGUF model file")
        self._loaded = _LoadedModel(lib, model)  # frees the model after the context below
        self._model = model
        metadata = {k: self._meta(k) for k in ("tokenizer.ggml.model",)}
        self.tokenizer = LlamaCppTokenizer(lib, self._loaded, metadata)
        sampling = {k: value for k in GGUF_KEYS if (value := self._meta(k))}
        self.sampling_defaults = from_gguf_metadata(sampling) or LLAMA_CPP
        trained = lib.llama_model_n_ctx_train(model)
        self.context_length = int(context_length or min(trained, 8192))
        self.max_batch_size = max_batch_size
        self.n_batch = 512  # tokens per llama_decode call
        threads = n_threads or os.cpu_count() or 1
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = self.context_length
        cparams.n_batch = cparams.n_ubatch = self.n_batch
        cparams.n_seq_max = max_batch_size + 1  # one more: the released sequence kept
        cparams.kv_unified = True  # rows share the whole cache instead of n_ctx / n_seq_max each
        cparams.n_threads, cparams.n_threads_batch = threads, n_threads_batch or threads
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            raise LmlabError(f"llama.cpp cannot create a context of {self.context_length} tokens")
        self._ctx = ctx
        self._batch = lib.llama_batch_init(self.n_batch, 0, max_batch_size)
        self._memory = lib.llama_get_memory(ctx)
        self._free_seqs = list(range(max_batch_size + 1))
        # Prefix reuse: the tokens each sequence's cells hold, and the released sequence whose
        # cells are kept (one extra sequence id). Not for sliding-window or recurrent models,
        # whose cells do not simply hold every position read.
        self._history: dict[int, list[int]] = {}
        self._kept: int | None = None
        self._holds_positions = not (
            lib.llama_model_n_swa(model)
            or lib.llama_model_is_recurrent(model)
            or lib.llama_model_is_hybrid(model)
        )
        self.reuses_prefixes = self._holds_positions
        self.reused_tokens = 0  # prompt tokens not read again thanks to prefix reuse
        self._vocab_size = self.tokenizer.vocab_size
        weakref.finalize(self, _free, lib, ctx, self._batch)

    def set_threads(self, n_threads: int, n_threads_batch: int) -> None:
        """Compute threads for one token at a time and for several (llama.cpp's -t and -tb)."""
        self._lib.llama_set_n_threads(self._ctx, n_threads, n_threads_batch)

    def _meta(self, key: str) -> str:
        buf = ctypes.create_string_buffer(256)
        n = self._lib.llama_model_meta_val_str(self._model, key.encode(), buf, 256)
        return buf.value.decode("utf-8", "replace") if n >= 0 else ""

    def new_state(self, batch_size: int = 1) -> SeqState:
        free = self.max_batch_size - self.live_sequences
        if batch_size > free:
            raise LmlabError(
                f"the llama backend decodes at most {self.max_batch_size} rows at once "
                f"({free} free); lower n or raise max_batch_size"
            )
        if batch_size > len(self._free_seqs):
            self._drop_kept()
        seqs = [self._free_seqs.pop(0) for _ in range(batch_size)]
        for seq in seqs:
            self._history[seq] = []
        return SeqState(seqs)

    @property
    def live_sequences(self) -> int:
        """Rows of states not yet released."""
        return self.max_batch_size + 1 - len(self._free_seqs) - (self._kept is not None)

    def release(self, state: SeqState, keep: bool = True) -> None:
        """Free the state's sequences; the last one's cells stay for prefix reuse unless
        `keep` is False (work that should leave the cache as it found it)."""
        for seq in state.seq_ids:
            self._drop_kept()
            if self.reuses_prefixes and keep:
                self._kept = seq
            else:
                self._forget(seq)
        state.seq_ids = []

    def forget_released(self) -> None:
        """Drop the released sequence's kept cells (see `LanguageModel.forget_released`)."""
        self._drop_kept()

    def _forget(self, seq: int) -> None:
        self._lib.llama_memory_seq_rm(self._memory, seq, -1, -1)
        self._history.pop(seq, None)
        self._free_seqs.append(seq)

    def _drop_kept(self) -> None:
        if self._kept is not None:
            self._forget(self._kept)
            self._kept = None

    def _reuse(self, state: SeqState, rows: list[list[int]]) -> list[list[int]]:
        """Start a fresh state whose rows read the same prompt on the cells of the longest
        prefix another sequence holds; the tokens each row still has to read."""
        first = rows[0]
        if state.length or not self.reuses_prefixes or len(first) < 2:
            return rows
        if any(row != first for row in rows[1:]):
            return rows
        for seq in state.seq_ids:  # every row finds the same source and length
            state.length = self._reuse_prefix(seq, first)
        return [row[state.length :] for row in rows]

    def share_prefix(self, state: SeqState, token_ids: list[int]) -> int:
        """A fresh state starts on the cells of the longest prefix another sequence holds."""
        return len(token_ids) - len(self._reuse(state, [token_ids])[0])

    def _reuse_prefix(self, seq: int, ids: list[int]) -> int:
        """Give a fresh sequence the cells of the longest prefix of `ids` another sequence holds
        (all but the last token, whose logits are wanted); the number of tokens reused."""
        best, source = 0, None
        for other, held in self._history.items():
            n = common_prefix(held, ids[:-1])
            if n > best:
                best, source = n, other
        if source is not None:
            self._lib.llama_memory_seq_cp(self._memory, source, seq, 0, best)
            self._history[seq] = ids[:best]
            self.reused_tokens += best
        return best

    def forward(
        self, state: SeqState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        ids = token_ids.tolist()
        if not all_positions:  # scoring wants every position's logits: nothing is skipped
            ids = self._reuse(state, ids)
        rows, length = len(ids), len(ids[0])
        per_call = max(1, self.n_batch // rows)  # positions per llama_decode call
        outputs = []
        for start in range(0, length, per_call):
            stop = min(length, start + per_call)
            want = "all" if all_positions else ("last" if stop == length else "none")
            entries = [
                (seq, state.length + start, ids[row][start:stop], want)
                for row, seq in enumerate(state.seq_ids)
            ]
            outputs.append(self._decode(entries).view(rows, -1, self._vocab_size))
        state.length += length
        if all_positions:
            return torch.cat(outputs, dim=1)
        return outputs[-1][:, -1]

    def forward_each(self, states: list[SeqState], token_ids: list[list[int]]) -> torch.Tensor:
        """Advance single-row states by their own tokens in as few llama_decode calls as fit.

        All or nothing: when the cache fills in a later call, what the earlier ones read is
        removed again before `CacheFull` is raised, so the caller can free room and retry."""
        start = [s.length for s in states]
        try:
            return self._forward_each(states, token_ids)
        except CacheFull:
            for state, length in zip(states, start, strict=True):
                self.truncate(state, length)
            raise

    def can_truncate(self) -> bool:
        """Yes, unless the model's cells do not simply hold every position read
        (sliding-window or recurrent models)."""
        return self._holds_positions

    def truncate(self, state: SeqState, length: int) -> None:
        """Remove the sequence's cells from position `length` on (`llama_memory_seq_rm`)."""
        seq = state.seq_ids[0]
        self._lib.llama_memory_seq_rm(self._memory, seq, length, -1)
        del self._history[seq][length:]
        state.length = length

    def _forward_each(self, states: list[SeqState], token_ids: list[list[int]]) -> torch.Tensor:
        out: list[torch.Tensor | None] = [None] * len(states)
        group: list[int] = []
        size = 0
        token_ids = [self._reuse(s, [ids])[0] for s, ids in zip(states, token_ids, strict=True)]

        def flush() -> None:
            entries = [
                (states[i].seq_ids[0], states[i].length, token_ids[i], "last") for i in group
            ]
            for i, row in zip(group, self._decode(entries), strict=True):
                out[i] = row
                states[i].length += len(token_ids[i])

        for i, ids in enumerate(token_ids):
            if len(ids) > self.n_batch:  # a long prompt goes alone, in several calls
                out[i] = self.forward(states[i], torch.tensor([ids]))[0]
                continue
            if size + len(ids) > self.n_batch:
                flush()
                group, size = [], 0
            group.append(i)
            size += len(ids)
        if group:
            flush()
        return torch.stack(out)

    def _decode(self, entries: list[tuple[int, int, list[int], str]]) -> torch.Tensor:
        """One llama_decode call. Each entry: (sequence id, first position, tokens, which
        logits: "all" | "last" | "none"). Returns the requested logits rows, in order (N, V)."""
        lib, batch = self._lib, self._batch
        n = outputs = 0
        for seq, position, ids, want in entries:
            for t, token in enumerate(ids):
                batch.token[n] = token
                batch.pos[n] = position + t
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                flag = want == "all" or (want == "last" and t == len(ids) - 1)
                batch.logits[n] = flag
                outputs += flag
                n += 1
        batch.n_tokens = n
        code = lib.llama_decode(self._ctx, batch)
        if code == 1 and self._kept is not None:  # no room: give up the kept cells first
            self._drop_kept()
            code = lib.llama_decode(self._ctx, batch)
        if code == 1:  # llama.cpp found no cells for the batch and read none of it
            raise CacheFull(f"the {self.context_length}-token context of the llama backend is full")
        if code != 0:
            raise LmlabError(f"llama.cpp could not decode this batch (code {code})")
        for seq, position, ids, _ in entries:
            held = self._history[seq]
            del held[position:]
            held.extend(ids)
        if outputs == 0:
            return torch.empty(0, self._vocab_size)
        flat = np.ctypeslib.as_array(
            lib.llama_get_logits(self._ctx), shape=(outputs * self._vocab_size,)
        )
        return torch.from_numpy(flat.copy()).view(outputs, self._vocab_size)


def _free(lib, ctx, batch) -> None:
    lib.llama_batch_free(batch)
    lib.llama_free(ctx)
