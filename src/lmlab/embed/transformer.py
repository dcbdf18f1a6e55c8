"""Pooled transformer encoders (the bundled all-MiniLM-L6-v2, any Hugging Face folder).

A sentence vector is a pooling of the token states of one layer:
  mean: the average over real tokens (attention mask 1), [CLS] and [SEP] included, as
        sentence-transformers does for all-MiniLM-L6-v2;
  cls:  the first token's state;
  max:  the element-wise maximum over real tokens.
Speed comes from doing little: the fast tokenizer in Rust over the whole list, batches of
texts of similar length (so almost no padding), and the model run by ONNX Runtime (exported
once into the cache; see onnx_runtime.py) or else by torch (`inference_mode`, SDPA attention).
Once the export is cached, neither torch nor transformers is imported: the ONNX path needs only
`tokenizers`, `onnxruntime` and numpy, so `lmlab similarity a b` starts in about a second.
Which float32 runtime `auto` takes, `load_encoder` measures once per machine (embed/fast.py).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmlab.embed.base import Encoded, Encoder
from lmlab.errors import LmlabError
from lmlab.text.hf_tokenizer import HFTokenizer

if TYPE_CHECKING:
    import torch

POOLINGS = ("mean", "cls", "max")
BACKENDS = ("auto", "onnx", "int8", "torch")
DTYPES = ("float32", "bfloat16")  # bfloat16: torch only, fast where the CPU has AMX/AVX512-BF16


class TransformerEncoder(Encoder):
    """A transformers model folder pooled into sentence vectors.

    Args:
        folder: config.json + weights + tokenizer.json (a sentence-transformers folder reads
            its pooling and max_seq_length from 1_Pooling/config.json, sentence_bert_config.json).
        pooling: mean, cls or max (default: the folder's own, else mean).
        layer: which hidden states to pool: -1 the last layer, 0 the embedding layer's output.
        max_length: tokens per text, special tokens included (default: the folder's own).
        backend: onnx (ONNX Runtime, after a one-time export into the cache), torch, or auto
            (ONNX Runtime; `load_encoder` passes torch where torch encodes faster on this CPU,
            measured once: see embed/fast.py; torch when the model does not export); int8 is
            onnx with int8 weights (faster where the CPU multiplies int8 well; cosine 0.99 or
            more to the exact vectors). Layers other than the last always run in torch.
        dtype: float32, or bfloat16 (torch weights and products in bfloat16: fast on CPUs with
            AMX or AVX512-BF16, slow elsewhere; cosine about 0.9999 to float32).

    Example:
        >>> enc = TransformerEncoder(path_to_folder, pooling="cls")
        >>> enc.encode("The man bites the dog.").shape
        (384,)
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        name: str | None = None,
        pooling: str | None = None,
        layer: int = -1,
        max_length: int | None = None,
        backend: str = "auto",
        dtype: str = "float32",
    ) -> None:
        from tokenizers import Tokenizer as RawTokenizer

        folder = Path(folder)
        self.name = name or folder.name
        self.pooling = pooling or folder_pooling(folder)
        if self.pooling not in POOLINGS:
            raise LmlabError(f"pooling must be one of {', '.join(POOLINGS)}", param="pooling")
        check_backend_and_dtype(backend, dtype)
        if dtype == "bfloat16":
            backend = "torch"
        self.tokenizer = HFTokenizer(folder)
        self.layer = layer
        self.dtype = dtype
        self.model: torch.nn.Module | None = None  # loaded only when torch computes or exports
        # A cached ONNX export runs without torch; its shape facts were saved with it.
        self._onnx = self._cached_onnx(folder, backend)
        config = self._onnx.config if self._onnx is not None else self._load_torch_model(folder)
        n_layers = int(config.get("num_hidden_layers") or 0)
        if not -(n_layers + 1) <= layer <= n_layers:
            raise LmlabError(f"layer must be between {-(n_layers + 1)} and {n_layers}")
        self.dimension = int(config["hidden_size"])
        window = int(config.get("max_position_embeddings") or 512)
        self.max_length = min(max_length or _folder_max_length(folder) or window, window)
        self._pad_id = int(config.get("pad_token_id") or 0)
        # A second handle on tokenizer.json for batch work: truncation on, one Rust call per list.
        self._fast = RawTokenizer.from_file(str(folder / "tokenizer.json"))
        self._fast.no_padding()
        self._fast.enable_truncation(self.max_length)
        self._prefix, self._suffix = _special_frame(self.tokenizer)
        if self._onnx is None:
            self._onnx = self._onnx_states(folder, backend, config)
        self.backend = "torch" if self._onnx is None else "int8" if backend == "int8" else "onnx"
        if self.model is not None and dtype == "bfloat16":
            import torch

            self.model.to(torch.bfloat16)

    def _load_torch_model(self, folder: Path) -> dict:
        """Load the model into torch (for the torch backend, or to export it); its shape facts."""
        from transformers import AutoModel

        from lmlab._offline import quiet_transformers
        from lmlab.embed.onnx_runtime import config_facts

        try:
            with quiet_transformers():
                self.model = AutoModel.from_pretrained(
                    folder, local_files_only=True, attn_implementation="sdpa"
                ).eval()
        except Exception as e:  # unreadable weights, config or architecture
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise LmlabError(f"cannot load an encoder from {folder}: {first}") from None
        return config_facts(self.model.config)

    def _wants_onnx(self, backend: str) -> bool:
        if backend == "torch" or self.layer != -1:
            return False
        from lmlab.embed.onnx_runtime import onnx_available

        if not onnx_available():
            if backend != "auto":
                raise LmlabError(f"the {backend} backend needs: pip install onnxruntime onnx")
            return False
        if backend == "int8" and importlib.util.find_spec("onnx_ir") is None:
            raise LmlabError("the int8 backend needs: pip install onnx-ir")
        return True

    def _cached_onnx(self, folder: Path, backend: str):
        """The ONNX Runtime session of an export already in the cache, or None."""
        if not self._wants_onnx(backend):
            return None
        from lmlab.embed.onnx_runtime import cached_onnx_states

        return cached_onnx_states(folder, int8=backend == "int8")

    def _onnx_states(self, folder: Path, backend: str, config: dict):
        """Export the loaded torch model to ONNX (once, into the cache) and run that, or None."""
        if not self._wants_onnx(backend):
            return None
        from lmlab.embed.onnx_runtime import onnx_states

        states = onnx_states(folder, self.model, config, int8=backend == "int8")
        if states is None and backend != "auto":
            raise LmlabError(f"{self.name} does not export to ONNX; use backend='torch'")
        return states

    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        encodings = self._fast.encode_batch(texts)
        ids = [e.ids for e in encodings]
        truncated = sum(1 for e in encodings if e.overflowing)
        return self._pool_all(ids, batch_size, truncated)

    def _encode_ids(self, ids: list[list[int]], batch_size: int) -> Encoded:
        room = self.max_length - len(self._prefix) - len(self._suffix)
        framed = [self._prefix + row[:room] + self._suffix for row in ids]
        return self._pool_all(framed, batch_size, sum(1 for row in ids if len(row) > room))

    def _pool_batch(self, rows: list[list[int]]) -> np.ndarray:
        input_ids, mask = _pad(rows, self._pad_id)
        states = self._states(input_ids, mask)  # (B, T, C) float32
        m = mask[:, :, None].astype(states.dtype)  # (B, T, 1)
        if self.pooling == "cls":
            pooled = states[:, 0]
        elif self.pooling == "max":
            pooled = np.where(m == 0, np.float32(-1e9), states).max(axis=1)
        else:  # mean over real tokens: sum of states / number of tokens, summed in float64
            # (exact to float32 rounding; torch's float32 sum differed from it by up to 1e-7)
            pooled = (states * m).sum(axis=1, dtype=np.float64) / np.maximum(m.sum(axis=1), 1)
        return pooled.astype(np.float32, copy=False)

    def _states(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Hidden states (B, T, C) of the pooled layer, as float32."""
        if self._onnx is not None:
            return self._onnx(input_ids, mask)
        import torch

        ids, attention = torch.from_numpy(input_ids), torch.from_numpy(mask)
        with torch.inference_mode():
            if self.layer == -1:
                states = self.model(input_ids=ids, attention_mask=attention).last_hidden_state
            else:
                out = self.model(input_ids=ids, attention_mask=attention, output_hidden_states=True)
                states = out.hidden_states[self.layer]  # [0] is the embedding layer's output
            return states.float().numpy()

    def token_vectors(self, text: str, *, special_tokens: bool = False) -> TokenEmbeddings:
        """Contextual vectors of the tokens of `text`, without [CLS]/[SEP] (lecture 003) unless
        `special_tokens` (Hugging Face's feature-extraction pipeline keeps them)."""
        ids = self._fast.encode(text).ids
        input_ids, mask = _pad([ids], self._pad_id)
        states = self._states(input_ids, mask)[0]
        keep = slice(len(self._prefix), len(ids) - len(self._suffix))
        if special_tokens:
            keep = slice(0, len(ids))
        content = ids[keep]
        return TokenEmbeddings(
            [self.tokenizer.id_to_token(i) for i in content], content, states[keep].copy()
        )


def check_backend_and_dtype(backend: str, dtype: str) -> None:
    """A one-line error for an unknown backend or dtype, or a dtype the backend cannot run."""
    if backend not in BACKENDS:
        raise LmlabError(f"backend must be one of {', '.join(BACKENDS)}", param="backend")
    if dtype not in DTYPES:
        raise LmlabError(f"dtype must be one of {', '.join(DTYPES)}", param="dtype")
    if dtype == "bfloat16" and backend not in ("auto", "torch"):
        raise LmlabError(
            f"dtype bfloat16 runs in torch, not with backend {backend!r}", param="dtype"
        )


@dataclass(repr=False)
class TokenEmbeddings:
    """The tokens of a text and one contextual vector per token."""

    tokens: list[str]
    ids: list[int]
    vectors: np.ndarray  # float32 (n_tokens, d)

    def __repr__(self) -> str:  # the tokens and the array's shape, not its numbers
        from lmlab.reprs import brief_repr

        shown = self.tokens if len(self.tokens) <= 12 else [*self.tokens[:11], "…"]
        return brief_repr(self, tokens=shown, vectors=f"array{self.vectors.shape}")


def _pad(rows: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad rows of token ids: ids (B, T) and attention mask (B, T), int64."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def _special_frame(tokenizer: HFTokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (e.g. [CLS] ... [SEP])."""
    bare = tokenizer.encode("a")
    framed = tokenizer.encode("a", add_special_tokens=True)
    start = next(i for i in range(len(framed)) if framed[i : i + len(bare)] == bare)
    return framed[:start], framed[start + len(bare) :]


def folder_pooling(folder: Path) -> str:
    """The pooling a sentence-transformers folder declares (1_Pooling/config.json), else mean."""
    path = folder / "1_Pooling" / "config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        for mode in POOLINGS:
            key = "pooling_mode_cls_token" if mode == "cls" else f"pooling_mode_{mode}_tokens"
            if config.get(key):
                return mode
    return "mean"


def _folder_max_length(folder: Path) -> int | None:
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        return json.loads(path.read_text()).get("max_seq_length")
    return None
