"""The ONNX Runtime path of transformer encoders: export once into the cache, run fast after.

The folder's model is traced once to ONNX (token ids + attention mask -> last hidden states)
into `$LMLAB_HOME/onnx/<sha256 of its weights and config>/model.onnx`, written atomically.
ONNX Runtime then fuses the graph (layer norms, GELU, ...) for the CPU; measured here it reads
about 2x as many texts per second as sentence-transformers on mixed lengths and up to 3x on
short sentences, with cosine differences below 1e-6 (benchmarks/embed.py). A fresh export is
checked against torch on a padded batch before it is kept; a model that does not export keeps
the torch path. A cached export runs without importing torch or transformers: the shape facts
the encoder needs (hidden size, layers, window, padding id) are saved beside it.
The int8 variant (`backend="int8"`) stores every weight matrix of the export as int8 in blocks
of 128 inputs, one scale per block (ONNX Runtime's MatMulNBits, 8 bits, symmetric), and runs the
products in int8 with the activations quantized per block too (accuracy level 4). Measured on
2,000 STS-B sentences it keeps cosine >= 0.993 to the float32 vectors (mean 0.999) and needs
about 30% less CPU time than float32. ONNX Runtime's per-channel dynamic quantization is faster
(about half the CPU time) but falls to cosine 0.97 on short sentences: one scale for a whole
activation row is too coarse for this model; leaving out the sensitive products (FFN
down-projection, first and last layer) or static QDQ calibration did not bring it to 0.99
(the table is in the README).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lmlab.home import atomic_dir, atomic_write_text, lmlab_home, remembered_sha256

if TYPE_CHECKING:
    import torch

ONNX_FILE = "model.onnx"
BLOCK = 128  # inputs per int8 weight scale (see _quantize)
INT8_FILE = f"model.int8-block{BLOCK}.onnx"
SOURCE_FILE = "source.json"  # the folder exported and the model's shape facts


def onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))


class OnnxStates:
    """last_hidden_state (B, T, C) of a folder's model, computed by ONNX Runtime.

    `config` holds the model's shape facts (see config_facts), saved with the export.
    """

    def __init__(self, model_file: Path, config: dict[str, Any] | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: on a shared CPU, spinning threads steal the
        # cores the work needs (measured: about 20% more texts/s with spinning off).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.config = config or {}

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ids and attention mask (B, T) int64 -> float32 states (B, T, C)."""
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (states,) = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})
        return states


def _threads() -> int:
    """Compute threads: torch's count when torch is loaded (the server sets it for every
    model), else OMP_NUM_THREADS as torch would read it, else 0 (ONNX Runtime: one per core)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0


def config_facts(config: Any) -> dict[str, Any]:
    """What a pooled encoder needs of a transformers config, as plain JSON values."""
    return {
        "hidden_size": int(config.hidden_size),
        "num_hidden_layers": int(getattr(config, "num_hidden_layers", 0) or 0),
        "max_position_embeddings": int(getattr(config, "max_position_embeddings", 0) or 0),
        "pad_token_id": int(getattr(config, "pad_token_id", None) or 0),
    }


def cached_onnx_states(folder: Path, *, int8: bool = False) -> OnnxStates | None:
    """The export of `folder` if the cache holds it with its shape facts, else None (then the
    model is loaded into torch and `onnx_states` exports it). Imports no torch."""
    target = lmlab_home() / "onnx" / content_key(folder)
    try:
        config = json.loads((target / SOURCE_FILE).read_text())["config"]
        if not (target / ONNX_FILE).is_file():
            return None
        if int8 and not (target / INT8_FILE).is_file():
            _quantize(target / ONNX_FILE, target / INT8_FILE)
        return OnnxStates(target / (INT8_FILE if int8 else ONNX_FILE), config)
    except Exception:  # absent, or written by an older lmlab, or damaged: the torch route
        return None


def onnx_states(
    folder: Path, model: torch.nn.Module, config: dict[str, Any], *, int8: bool = False
) -> OnnxStates | None:
    """An ONNX Runtime twin of `model` (exported and verified on first use), or None."""
    target = lmlab_home() / "onnx" / content_key(folder)
    pad_id = config["pad_token_id"]
    source = json.dumps({"folder": str(folder), "config": config})
    if not (target / ONNX_FILE).is_file():
        try:
            with atomic_dir(target) as tmp:
                _export(model, tmp / ONNX_FILE, pad_id)
                _verify(model, OnnxStates(tmp / ONNX_FILE), pad_id)
                (tmp / SOURCE_FILE).write_text(source)
        except Exception:  # an architecture the tracer or the runtime cannot take: use torch
            return None
    try:
        if json.loads((target / SOURCE_FILE).read_text()).get("config") != config:
            atomic_write_text(target / SOURCE_FILE, source)  # an export of an older lmlab
        if int8 and not (target / INT8_FILE).is_file():
            _quantize(target / ONNX_FILE, target / INT8_FILE)
        return OnnxStates(target / (INT8_FILE if int8 else ONNX_FILE), config)
    except Exception:  # a damaged cache entry: drop it, torch this time, re-export next time
        import shutil

        shutil.rmtree(target, ignore_errors=True)
        return None


def _quantize(source: Path, out: Path) -> None:
    """int8 weights for every MatMul in blocks of BLOCK inputs (one scale each); written
    atomically. At run time the activations are quantized per block too (accuracy level 4)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # That module calls logging.basicConfig(INFO) on import: give the application its own back.
    root.handlers[:], root.level = handlers, level
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)
    from lmlab.home import atomic_file

    quantizer = MatMulNBitsQuantizer(
        onnx.load(source), bits=8, block_size=BLOCK, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    with atomic_file(out) as tmp:
        quantizer.model.save_model_to_file(str(tmp), False)


def content_key(folder: Path) -> str:
    """Content key: the weights' and config's hashes (a renamed copy reuses the export)."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name == "config.json" or name.endswith((".safetensors", ".bin")):
            h.update(name.encode() + remembered_sha256(folder / name).encode())
    h.update(metadata.version("torch").encode())  # the exporter's version (torch.__version__)
    return h.hexdigest()[:24]


def _probe(pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch (B=2, T=7): padding must reach the trace, not be optimized away."""
    import torch

    ids = torch.tensor([[101, 7592, 2088, 2003, 2307, 1012, 102], [101, 7592, 102] + [pad_id] * 4])
    mask = (torch.arange(7)[None, :] < torch.tensor([[7], [3]])).long()
    return ids, mask


def _export(model: torch.nn.Module, out: Path, pad_id: int) -> None:
    import warnings

    import torch

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids, mask = _probe(pad_id)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow
        torch.onnx.export(
            _LastHiddenState(model).eval(),
            (ids, mask),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=17,
            dynamo=False,
        )


def _verify(model: torch.nn.Module, states: OnnxStates, pad_id: int) -> None:
    import torch

    ids, mask = _probe(pad_id)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    got = states(ids.numpy(), mask.numpy())
    real = mask.numpy().astype(bool)
    if not np.allclose(got[real], expected[real], atol=1e-4):
        raise ValueError("the ONNX export does not reproduce the model")
