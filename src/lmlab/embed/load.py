"""Encoder specs -> loaded encoders: the same names and paths as `lmlab.load_lm`.

- the bundled `all-minilm-l6-v2` (the default) or any transformers folder: pooled states;
- `static=True`: the mean of the input-embedding rows of any model, a causal LM or a .gguf
  file included (GGUF files are converted once into the cache, as for the torch backend);
- a folder with `lmlab.json`: its "kind" picks the loader in ENCODER_LOADERS (bow, tfidf, and
  the runs of `lmlab train`: mean-pooled hidden states, see trained.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import import_module
from pathlib import Path

import numpy as np

from lmlab.embed.base import Encoder
from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, DEFAULT_ENCODER, RUN_FILE, ModelRef, resolve

# lmlab.json kind -> "module:function", the function taking (folder, **options) -> Encoder.
ENCODER_LOADERS: dict[str, str] = {
    "bow": "lmlab.embed.sparse:load_bag_of_words",
    "tfidf": "lmlab.embed.sparse:load_bag_of_words",
    **{
        kind: "lmlab.embed.trained:load_run_encoder"
        for kind in ("bert", "gpt", "rnn", "lstm", "gru", "mlp")
    },
}


def load_encoder(
    spec: str | Path | Encoder = DEFAULT_ENCODER,
    *,
    pooling: str | None = None,
    layer: int = -1,
    static: bool = False,
    max_length: int | None = None,
    backend: str = "auto",
) -> Encoder:
    """Load an encoder by name or path (a loaded encoder is returned as it is).

    Args:
        spec: a bundled name, a transformers folder, a .gguf file (static only) or a saved
            bow/tfidf folder.
        pooling: mean, cls or max (transformer encoders; default: the folder's own, else mean).
        layer: which layer's states to pool (-1: the last; 0: the embedding layer's output).
        static: use the model's input-embedding rows instead of its contextual states.
        max_length: tokens per text (default: the model's own window).
        backend: for transformer encoders: onnx, int8, torch or auto (ONNX Runtime when it is
            installed and the model exports; the export is made once into the cache).

    Example:
        >>> enc = lmlab.load_encoder()            # all-minilm-l6-v2
        >>> enc.encode(["bank", "banks"]) @ enc.encode("river")
    """
    if isinstance(spec, Encoder):
        return spec
    ref = resolve(spec)
    encoder = _load(
        ref, pooling=pooling, layer=layer, static=static, max_length=max_length, backend=backend
    )
    # How to load it again (an index saved with it records this).
    encoder.spec = ref.name if ref.name in BUNDLED else str(ref.path.resolve())
    return encoder


def _load(ref: ModelRef, *, pooling, layer, static, max_length, backend) -> Encoder:
    if ref.kind == "run":
        return _load_run(ref.path)
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

    return TransformerEncoder(
        folder, name=ref.name, pooling=pooling, layer=layer, max_length=max_length, backend=backend
    )


def _load_run(folder: Path) -> Encoder:
    try:
        kind = json.loads((folder / RUN_FILE).read_text())["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        raise LmlabError(f"{folder / RUN_FILE} is not a valid lmlab run file") from None
    if kind not in ENCODER_LOADERS:
        known = ", ".join(sorted(ENCODER_LOADERS))
        raise LmlabError(f"{folder} holds a {kind!r} model, which has no encoder ({known})")
    module, function = ENCODER_LOADERS[kind].split(":")
    return getattr(import_module(module), function)(folder)


@lru_cache(maxsize=2)
def _cached(spec: str) -> Encoder:
    return load_encoder(spec)


def encode(
    texts: str | list[str],
    model: str | Path | Encoder = DEFAULT_ENCODER,
    *,
    batch_size: int = 32,
    dimensions: int | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Embed texts in one call: `load_encoder(model).encode(texts, ...)`.

    The last two models named here stay loaded, so calling this in a loop is cheap.

    Example:
        >>> lmlab.encode(["The man bites the dog.", "The dog bites the man."]).shape
        (2, 384)
    """
    encoder = model if isinstance(model, Encoder) else _cached(str(model))
    return encoder.encode(texts, batch_size=batch_size, dimensions=dimensions, normalize=normalize)
