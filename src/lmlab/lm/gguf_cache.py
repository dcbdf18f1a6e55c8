"""Convert a GGUF file once into a transformers folder in the cache, for the torch backend.

`transformers` can read GGUF, but de-quantizes and rebuilds the tokenizer on every load (about
30 s for the bundled model). We do it once and keep `model.safetensors`, `config.json` and
`tokenizer.json` under `$LMLAB_HOME/gguf/<name>-<sha256 prefix>/`, written atomically; later
loads map the safetensors file and take well under a second.

Weights are kept at the precision the GGUF file stores: float16 for quantized and F16 files
(block scales are float16, so nothing is lost), bfloat16 for BF16 files, float32 for F32 files.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.home import atomic_dir, file_sha256, lmlab_home

MARKER = "lmlab-converted.json"  # written last: its presence means the folder is complete
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", MARKER)
log = logging.getLogger(__name__)


def cache_folder(gguf_path: Path) -> Path:
    """Where the conversion of `gguf_path` lives (keyed by the file's content)."""
    return lmlab_home() / "gguf" / f"{gguf_path.stem}-{file_sha256(gguf_path)[:16]}"


def is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def converted_folder(gguf_path: Path, *, rebuild: bool = False) -> Path:
    """The cached transformers folder for `gguf_path`, converting it first if needed."""
    target = cache_folder(gguf_path)
    if rebuild and target.exists():
        shutil.rmtree(target)
    if not is_complete(target):
        log.info(
            "Converting %s for the torch backend (once; about 30 s) into %s", gguf_path.name, target
        )
        with atomic_dir(target) as tmp:
            _convert(gguf_path, tmp)
    return target


def storage_dtype(gguf_path: Path) -> str:
    """float32, bfloat16 or float16: the precision the GGUF file keeps its weights at."""
    from gguf import GGMLQuantizationType, GGUFReader

    try:
        types = {t.tensor_type for t in GGUFReader(gguf_path).tensors}
    except Exception as e:
        raise LmlabError(f"{gguf_path} is not a readable GGUF file ({e})") from None
    if types <= {GGMLQuantizationType.F32}:
        return "float32"
    if GGMLQuantizationType.BF16 in types:
        return "bfloat16"
    return "float16"


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmlab._offline import quiet_transformers

    dtype = storage_dtype(gguf_path)
    kwargs = {"gguf_file": gguf_path.name, "local_files_only": True}
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, **kwargs)
    except Exception as e:  # transformers raises many types for unreadable or unsupported files
        raise LmlabError(f"cannot convert {gguf_path} with transformers: {e}") from None
    # The de-quantized model still carries its GGUF quantization config, which blocks saving.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.to(getattr(torch, dtype))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"source": str(gguf_path), "sha256": file_sha256(gguf_path), "dtype": dtype}
    (out / MARKER).write_text(json.dumps(info, indent=2))
