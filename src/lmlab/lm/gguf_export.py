"""Write a causal LM (a run tuned here, its LoRA adapters merged) as a GGUF file for llama.cpp.

`lmlab export RUN --out model.gguf` makes a tuned model run at llama.cpp's speed: `lmlab serve
--model model.gguf`, `lmlab generate --model model.gguf`. What is written:

  - the architecture `llama` (what the bundled SmolLM2 and most small chat models are): its
    hyperparameters from the model's config, its tensors under GGUF's names (the `gguf`
    package's table maps transformers' names onto them);
  - the query and key rows of every head reordered: transformers' Llama turns dimension i with
    dimension i + D/2 of a head (`rotate_half`), llama.cpp's turns the adjacent pair 2i, 2i+1;
    the same rotation, so the same attention scores, needs row i at 2i and row i + D/2 at 2i+1;
  - the vocabulary, merges, special tokens and chat template copied from the GGUF file the
    model was converted from (a run's base, followed back through the runs it was tuned from):
    llama.cpp tokenizes exactly as the base did;
  - weights as f16 (matrices; the norms stay float32, as llama.cpp keeps them) or q8_0 (blocks
    of 32 weights sharing one float16 scale, `gguf.quants`; a matrix whose rows are not whole
    blocks stays f16).

lmlab's own GPT runs are not exported: no GGUF architecture computes them exactly (below).
The file is written beside `out` and renamed into place: an error leaves nothing.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lmlab.errors import LmlabError
from lmlab.home import atomic_file
from lmlab.lm.transformers_lm import TransformersLM
from lmlab.models import resolve
from lmlab.posttrain.model import load_base, merge_adapters
from lmlab.runs import read_run

TYPES = ("f16", "q8_0")
# run kinds that hold a pretrained causal LM (with adapters or tuned weights)
TUNED_KINDS = ("sft", "dpo", "lora-lm")
# why lmlab's own GPT runs have no exact GGUF form
GPT_REASON = (
    "lmlab's GPT runs cannot be exported to GGUF exactly: llama.cpp's llama architecture has "
    "RMSNorm and a gated SiLU MLP where lmlab's GPT has LayerNorm and a GELU MLP, and its gpt2 "
    "architecture computes GELU by the tanh approximation and needs a byte-level BPE vocabulary "
    "in GPT-2's form; use the run with --model RUN (torch)"
)


@dataclass(frozen=True)
class Exported:
    """What `export_gguf` wrote."""

    path: Path
    type: str  # f16 or q8_0
    architecture: str
    parameters: int
    tensors: int
    bytes: int
    vocabulary: Path  # the GGUF file whose tokenizer was copied


def export_gguf(
    model: str | Path | TransformersLM,
    out: str | Path,
    *,
    type: str = "f16",
    vocabulary: str | Path | None = None,
) -> Exported:
    """Write `model` (a tuned run, its LoRA adapters merged) as a GGUF file llama.cpp loads.

    Args:
        model: a run of `lmlab train sft|dpo|lora`, a .gguf file, a Llama transformers folder
            converted from one, or a loaded TransformersLM (with `vocabulary`; its adapters
            are merged in place).
        out: the .gguf file to write (its folder must exist); replaced atomically.
        type: "f16" or "q8_0" (8-bit blocks: about half the size, slightly less exact).
        vocabulary: the GGUF file whose tokenizer to copy; by default the one the model (or
            the base it was tuned from) was converted from.

    Returns:
        An Exported: the path, the type, parameter and tensor counts, the file size.

    Example:
        >>> export_gguf("runs/sft", "sft.gguf", type="q8_0")
        >>> lmlab.generate(lmlab.load_lm("sft.gguf"), "Hi", max_tokens=8).text
    """
    if type not in TYPES:
        raise LmlabError(f"unknown type {type!r}: f16 or q8_0", param="type")
    out = Path(out)
    if out.suffix != ".gguf":
        raise LmlabError(f"{out} must end in .gguf (how lmlab and llama.cpp know the file)")
    if not out.parent.is_dir():
        raise LmlabError(f"the folder of {out} does not exist", param="out")
    if out.is_dir():
        raise LmlabError(f"{out} is a folder, not a file to write", param="out")
    if isinstance(model, TransformersLM):
        if vocabulary is None:
            raise LmlabError("a loaded model needs vocabulary=: the GGUF file of its tokenizer")
        lm = model
    else:
        _check_exportable(model)
        vocabulary = vocabulary if vocabulary is not None else vocabulary_file(model)
        lm = load_base(model, dtype="float32", name=resolve(model).name)
    vocab_file = Path(vocabulary)
    tokenizer_fields = _tokenizer_fields(vocab_file)
    merge_adapters(lm.model)
    hparams = _llama_hparams(lm.model.config, lm.name)
    with atomic_file(out) as tmp:
        counts = _write(tmp, lm, hparams, tokenizer_fields, type)
    return Exported(out, type, "llama", *counts, out.stat().st_size, vocab_file)


def _check_exportable(spec: str | Path) -> None:
    """A one-line error for a model that is not a causal LM export can write, before loading."""
    from lmlab.lm.transformers_lm import is_causal_lm_folder

    ref = resolve(spec)
    if ref.kind == "arpa":
        raise LmlabError(f"{spec} is an n-gram model (ARPA); GGUF holds neural networks")
    if ref.kind == "hf" and not is_causal_lm_folder(ref.path):
        raise LmlabError(f"{spec} is not a causal language model (it is an encoder)")
    if ref.kind == "run":
        kind = read_run(ref.path)["kind"]
        if kind == "gpt":
            raise LmlabError(GPT_REASON)
        if kind not in TUNED_KINDS:
            raise LmlabError(
                f"{spec} is a {kind!r} run, not a causal LM tuned from a pretrained one: export "
                "takes runs of lmlab train sft, dpo or lora, a .gguf file or a Llama folder"
            )


def vocabulary_file(spec: str | Path) -> Path:
    """The GGUF file whose tokenizer `spec` uses: the file itself, the base a run was tuned
    from (followed back through runs), or the source of a folder lmlab converted from GGUF."""
    from lmlab.lm.gguf_cache import MARKER

    ref = resolve(spec)
    if ref.kind == "gguf":
        return ref.path
    if ref.kind == "run":
        base = read_run(ref.path).get("base")
        if isinstance(base, str):
            return vocabulary_file(base)
    if ref.kind == "hf" and (ref.path / MARKER).is_file():
        source = Path(json.loads((ref.path / MARKER).read_text())["source"])
        if source.is_file():
            return source
    raise LmlabError(
        f"cannot export {spec}: its vocabulary is copied from the GGUF file of its base model, "
        "and it has none (it was not tuned from a bundled model or a .gguf file)"
    )


def _llama_hparams(config, name: str) -> dict:
    """The llama architecture's hyperparameters of a transformers config, or a one-line error
    for a model GGUF's llama cannot express as it is."""
    if getattr(config, "model_type", None) != "llama":
        raise LmlabError(
            f"cannot export {name}: it is a {config.model_type!r} model; lmlab writes GGUF's "
            "llama architecture only"
        )
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise LmlabError(f"cannot export {name}: its rope scaling {rope['rope_type']!r} is "
                         "not written yet (only plain RoPE)")  # fmt: skip
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise LmlabError(f"cannot export {name}: its linear layers have biases (not written yet)")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    theta = rope.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0
    return {
        "name": name,
        "context": config.max_position_embeddings,
        "width": config.hidden_size,
        "layers": config.num_hidden_layers,
        "ffn": config.intermediate_size,
        "heads": heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": head_dim,
        "eps": config.rms_norm_eps,
        "theta": float(theta),
        "vocab": config.vocab_size,
        "tied": bool(getattr(config, "tie_word_embeddings", False)),
    }


def _tokenizer_fields(path: Path) -> tuple[tuple[str, object, object, object], ...]:
    """(key, value, type, element type) of every tokenizer.* field of a GGUF file, and of
    general.license (a tuned model keeps its base's licence)."""
    stat = path.stat() if path.is_file() else None
    if stat is None:
        raise LmlabError(f"{path} is not a GGUF file", param="vocabulary")
    return _read_tokenizer_fields(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=2)  # gguf's reader takes ~10 s on the bundled file (2 cores)
def _read_tokenizer_fields(path: str, mtime_ns: int, size: int):
    from gguf import GGUFReader, GGUFValueType

    try:
        reader = GGUFReader(path)
    except Exception as e:  # numpy and struct errors on a damaged file
        raise LmlabError(f"{path} is not a readable GGUF file ({e})") from None
    fields = []
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer.") and field.name != "general.license":
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == GGUFValueType.ARRAY else None
        fields.append((field.name, field.contents(), kind, sub))
    if not any(name == "tokenizer.ggml.tokens" for name, *_ in fields):
        raise LmlabError(f"{path} has no vocabulary (tokenizer.ggml.tokens) to copy")
    return tuple(fields)


def _rope_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder each head's rows from transformers' halves (i, i + D/2) to llama.cpp's adjacent
    pairs (2i, 2i + 1): (heads * D, ...) -> the same shape."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
    )


def _tensors(model, hp: dict):
    """(GGUF name, float32 array) of every weight, in the model's order."""
    from gguf import MODEL_ARCH, get_tensor_name_map

    names = get_tensor_name_map(MODEL_ARCH.LLAMA, hp["layers"])
    for name, w in model.state_dict().items():
        if hp["tied"] and name == "lm_head.weight":
            continue  # llama.cpp reads the output layer from token_embd when output is absent
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise LmlabError(f"cannot export the tensor {name}: GGUF's llama has no place for it")
        w = w.detach().float()
        if gguf_name.endswith(("attn_q.weight", "attn_q.bias")):
            w = _rope_rows(w, hp["heads"])
        elif gguf_name.endswith(("attn_k.weight", "attn_k.bias")):
            w = _rope_rows(w, hp["kv_heads"])
        yield gguf_name, w.numpy()


def _write(path: Path, lm: TransformersLM, hp: dict, tokenizer_fields, type: str):
    """Write the header, metadata and tensors to `path`; (parameters, tensors) written."""
    from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
    from gguf.quants import quantize

    writer = GGUFWriter(path, "llama")
    writer.add_name(hp["name"])
    writer.add_file_type(LlamaFileType.MOSTLY_F16 if type == "f16" else LlamaFileType.MOSTLY_Q8_0)
    writer.add_context_length(hp["context"])
    writer.add_embedding_length(hp["width"])
    writer.add_block_count(hp["layers"])
    writer.add_feed_forward_length(hp["ffn"])
    writer.add_head_count(hp["heads"])
    writer.add_head_count_kv(hp["kv_heads"])
    writer.add_rope_dimension_count(hp["head_dim"])
    if hp["head_dim"] != hp["width"] // hp["heads"]:
        writer.add_key_length(hp["head_dim"])
        writer.add_value_length(hp["head_dim"])
    writer.add_rope_freq_base(hp["theta"])
    writer.add_layer_norm_rms_eps(hp["eps"])
    writer.add_vocab_size(hp["vocab"])
    for key, value, kind, sub in tokenizer_fields:
        if key == "tokenizer.ggml.tokens" and len(value) != hp["vocab"]:
            raise LmlabError(f"cannot export {hp['name']}: its vocabulary has {hp['vocab']} "
                             f"tokens, the GGUF file it is copied from {len(value)}")  # fmt: skip
        writer.add_key_value(key, value, kind, sub_type=sub)
    parameters = tensors = 0
    for name, w in _tensors(lm.model, hp):
        parameters += w.size
        tensors += 1
        if w.ndim == 1:  # norms: float32, as llama.cpp keeps them
            writer.add_tensor(name, w)
        elif type == "q8_0" and w.shape[-1] % 32 == 0:
            q = quantize(w, GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, q, raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, w.astype(np.float16))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return parameters, tensors
