"""Encoder specs -> loaded encoders: the same names and paths as `lmlab.load_lm`.

- the bundled `all-minilm-l6-v2` (the default) or any transformers folder: pooled states;
- `static=True`: the mean of the input-embedding rows of any model, a causal LM or a .gguf
  file included (GGUF files are converted once into the cache, as for the torch backend);
- a folder with `lmlab.json`: its "kind" picks the loader in lmlab.runs.RUN_KINDS (bow, tfidf,
  and the runs of `lmlab train`: mean-pooled hidden states, see trained.py).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmlab.deprecation import renamed_kwargs
from lmlab.embed.base import Encoder
from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, DEFAULT_ENCODER, ModelRef, resolve
from lmlab.runs import load_run

if TYPE_CHECKING:
    from lmlab.embed.transformer import TokenEmbeddings


@renamed_kwargs(spec="model")
def load_encoder(
    model: str | Path | Encoder = DEFAULT_ENCODER,
    *,
    pooling: str | None = None,
    layer: int = -1,
    static: bool = False,
    max_length: int | None = None,
    backend: str = "auto",
    dtype: str = "float32",
    fast: bool = False,
) -> Encoder:
    """Load an encoder by name or path (a loaded encoder is returned as it is).

    Args:
        model: a bundled name, a transformers folder, a .gguf file (static only) or a saved
            bow/tfidf folder (`spec=` is deprecated: use `model=`).
        pooling: mean, cls or max (transformer encoders; default: the folder's own, else mean).
        layer: which layer's states to pool (-1: the last; 0: the embedding layer's output).
        static: use the model's input-embedding rows instead of its contextual states.
        max_length: tokens per text (default: the model's own window).
        backend: for transformer encoders: onnx, int8, torch or auto (ONNX Runtime or torch,
            whichever is faster on this CPU, measured once; the export is made once into the
            cache).
        dtype: float32, or bfloat16 (torch; fast on CPUs with AMX or AVX512-BF16).
        fast: the fastest path on this CPU among float32, int8 and bfloat16 whose vectors keep
            cosine 0.999 or more to float32 on a fixed check set (measured once; see
            lmlab.embed.fast); the encoder's `backend` and `dtype` say which. Leave backend
            and dtype out with it; encoders other than transformers ignore it.

    Example:
        >>> enc = lmlab.load_encoder()            # all-minilm-l6-v2
        >>> enc.encode(["bank", "banks"]) @ enc.encode("river")
    """
    if isinstance(model, Encoder):
        return model
    from lmlab.embed.transformer import check_backend_and_dtype

    check_backend_and_dtype(backend, dtype)
    if fast and (backend != "auto" or dtype != "float32"):
        raise LmlabError("fast=True chooses the backend and dtype: leave them out", param="fast")
    ref = resolve(model)
    options = {"pooling": pooling, "layer": layer, "max_length": max_length, "backend": backend}
    encoder = _load(ref, static=static, fast=fast, dtype=dtype, **options)
    # How to load it again (an index saved with it records this).
    encoder.spec = ref.name if ref.name in BUNDLED else str(ref.path.resolve())
    return encoder


def _load(ref: ModelRef, *, static: bool, fast: bool, **options) -> Encoder:
    """The encoder of `ref`; `options`: a TransformerEncoder's (the fast path's override its
    backend and dtype)."""
    if ref.kind == "run":
        return load_run(ref.path, "encoder")
    folder = ref.path
    if ref.kind == "gguf":
        if not static:
            raise LmlabError(
                f"{ref.name} is a chat model; pass static=True (--static) for its input "
                "embeddings, or use an encoder such as all-minilm-l6-v2",
                param="model",
            )
        from lmlab.lm.gguf_cache import converted_folder

        folder = converted_folder(ref.path)
    if static:
        from lmlab.embed.static import StaticEncoder

        return StaticEncoder(folder, name=ref.name)
    from lmlab.embed.transformer import TransformerEncoder

    if fast:
        from lmlab.embed.fast import fast_options

        options |= fast_options(folder)
    elif options["backend"] == "auto" and options["dtype"] == "float32" and options["layer"] == -1:
        from lmlab.embed.fast import default_backend
        from lmlab.embed.onnx_runtime import onnx_available

        # auto: whichever float32 runtime encodes faster on this CPU (measured once)
        if onnx_available() and default_backend(folder) == "torch":
            options["backend"] = "torch"
    return TransformerEncoder(folder, name=ref.name, **options)


@lru_cache(maxsize=2)
def _cached(spec: str) -> Encoder:
    return load_encoder(spec)


@renamed_kwargs(normalize="normalize_embeddings")
def encode(
    texts: str | list[str],
    model: str | Path | Encoder = DEFAULT_ENCODER,
    *,
    batch_size: int = 32,
    dimensions: int | None = None,
    normalize_embeddings: bool = True,
) -> np.ndarray:
    """Embed texts in one call: `load_encoder(model).encode(texts, ...)`.

    The last two models named here stay loaded, so calling this in a loop is cheap.

    Example:
        >>> lmlab.encode(["The man bites the dog.", "The dog bites the man."]).shape
        (2, 384)
    """
    encoder = model if isinstance(model, Encoder) else _cached(str(model))
    return encoder.encode(
        texts,
        batch_size=batch_size,
        dimensions=dimensions,
        normalize_embeddings=normalize_embeddings,
    )


def embed_tokens(text: str, model: str | Path | Encoder = DEFAULT_ENCODER) -> TokenEmbeddings:
    """Contextual token embeddings of `text` from a transformer encoder's last layer.

    Args:
        text: the text; its special tokens ([CLS], [SEP]) are read by the model but not returned.
        model: an encoder spec or a loaded TransformerEncoder.

    Returns:
        TokenEmbeddings(tokens, ids, vectors) with vectors of shape (n_tokens, d).

    Example:
        >>> t = lmlab.embed_tokens("bank")
        >>> t.tokens, t.vectors.shape
        (['bank'], (1, 384))
    """
    from lmlab.embed.transformer import TransformerEncoder

    encoder = load_encoder(model)
    if not isinstance(encoder, TransformerEncoder):
        raise LmlabError(f"{encoder.name} has no contextual token vectors", param="model")
    return encoder.token_vectors(text)
