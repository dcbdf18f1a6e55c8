"""Run directories and the one registry of their kinds.

A run directory is a folder lmlab wrote (`lmlab train ...`, a saved bag of words, a saved
classifier) with a RUN_FILE whose "kind" says what it holds. RUN_KINDS maps each kind to how
its folder loads as a language model (`lmlab.load_lm`) and as an encoder
(`lmlab.load_encoder`), or why it does not. Loaders are "module:function" strings imported
only when a folder of that kind is loaded: this module depends on no model code, so every
model module can import RUN_FILE from here without an import cycle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Literal

from lmlab.errors import LmlabError

RUN_FILE = "lmlab.json"


@dataclass(frozen=True)
class RunKind:
    """How a run directory of one kind loads; a role without a loader is an error."""

    lm: str | None = None  # "module:function": (folder, **options) -> LanguageModel
    encoder: str | None = None  # "module:function": (folder) -> Encoder
    not_lm: str | None = None  # what the folder is instead, for the error (after "FOLDER is")


_NEURAL_LM = "lmlab.lm.neural.run:load_run"
_TRAINED_ENCODER = "lmlab.embed.trained:load_run_encoder"
_BAG_OF_WORDS = "lmlab.embed.sparse:load_bag_of_words"

RUN_KINDS: dict[str, RunKind] = {
    "ngram": RunKind(lm="lmlab.lm.ngram.model:load_run"),
    **{
        kind: RunKind(lm=_NEURAL_LM, encoder=_TRAINED_ENCODER)
        for kind in ("mlp", "rnn", "lstm", "gru", "gpt")
    },
    "bert": RunKind(
        encoder=_TRAINED_ENCODER,
        not_lm="a masked language model (bert); eval, score and generate need a causal one; "
        "use it with lmlab.pipeline('fill-mask', model=...) or lmlab.load_masked_lm",
    ),
    "lora-lm": RunKind(lm="lmlab.lm.lora_lm:load_run"),
    "sft": RunKind(lm="lmlab.posttrain.model:load_tuned"),
    "dpo": RunKind(lm="lmlab.posttrain.model:load_tuned"),
    "reward": RunKind(
        not_lm="a reward model (it scores answers); use it with `lmlab generate --best-of N "
        "--reward RUN` or lmlab.load_reward"
    ),
    "bow": RunKind(encoder=_BAG_OF_WORDS),
    "tfidf": RunKind(encoder=_BAG_OF_WORDS),
    "seq2seq": RunKind(
        not_lm="a sequence-to-sequence model, P(target | source); use it with `lmlab "
        "translate` or lmlab.load_seq2seq(...).condition(source), a language model of the targets"
    ),
    "word2vec": RunKind(
        encoder="lmlab.wordvec.vectors:load_run_vectors",
        not_lm="word vectors (word2vec), not a language model; use it as an encoder "
        "(lmlab embed/similarity/map --encoder), or with `lmlab analogy`",
    ),
    "sentence-encoder": RunKind(
        encoder="lmlab.contrastive.encoder:load_sentence_encoder",
        not_lm="a sentence encoder (lmlab train simcse / contrastive), not a language model; "
        "use it with `lmlab embed`, `lmlab similarity` or lmlab.load_encoder",
    ),
    "clip": RunKind(
        encoder="lmlab.clip.encoder:load_clip",
        not_lm="an image-text encoder (CLIP-style); use it as an encoder: lmlab embed, "
        "index, search, map, classify --method zero-shot --via cosine --encoder RUN",
    ),
    "classifier": RunKind(
        not_lm="a text classifier, not a language model; use it with "
        "`lmlab classify predict` or lmlab.TextClassifier.load"
    ),
}


def is_run(folder: Path) -> bool:
    """Whether `folder` is a run directory (holds a RUN_FILE)."""
    return folder.is_dir() and (folder / RUN_FILE).is_file()


def read_run(folder: Path) -> dict[str, Any]:
    """The parsed RUN_FILE of a run directory, which names its kind; else a one-line error."""
    try:
        run = json.loads((folder / RUN_FILE).read_text())
        if not isinstance(run, dict) or not isinstance(run.get("kind"), str):
            raise ValueError("no kind")
    except (OSError, ValueError):
        raise LmlabError(f"{folder / RUN_FILE} is not a valid lmlab run file") from None
    return run


def load_run(folder: Path, role: Literal["lm", "encoder"], **options: Any) -> Any:
    """Load a run directory as a language model or an encoder, by the loader its kind names."""
    kind = read_run(folder)["kind"]
    entry = RUN_KINDS.get(kind)
    loader = getattr(entry, role) if entry is not None else None
    if loader is None:
        if role == "lm" and entry is not None and entry.not_lm:
            raise LmlabError(f"{folder} is {entry.not_lm}", param="model")
        known = ", ".join(sorted(k for k, e in RUN_KINDS.items() if getattr(e, role))) or "none"
        if role == "lm":
            raise LmlabError(
                f"{folder} holds a {kind!r} model, which this lmlab cannot load as a "
                f"language model ({known})",
                param="model",
            )
        raise LmlabError(
            f"{folder} holds a {kind!r} model, which has no encoder ({known})", param="model"
        )
    return call_loader(loader, folder, **options)


def call_loader(loader: str, *args: Any, **options: Any) -> Any:
    """Import "module:function" and call it: how a registry reaches code that imports it back."""
    module, function = loader.split(":")
    return getattr(import_module(module), function)(*args, **options)
