"""Run directories of models trained here, and the LanguageModel over them.

A run directory (`lmlab train KIND ... --out RUN`) holds:
  lmlab.json        {"kind": "gpt", "model": {config}, "train": {options}}
  config.json       the model's config dataclass (the architecture)
  model.safetensors the weights (the best by validation loss when there is validation data)
  tokenizer.json    (+ tokenizer_config.json) read by HFTokenizer
  checkpoint/       the last training state, for --resume
  metrics.jsonl, loss.png, valid.txt
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from importlib import import_module
from pathlib import Path

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel, State
from lmlab.lm.neural import MODELS, TRAIN_CLI_OPTIONS
from lmlab.runs import RUN_FILE
from lmlab.text.hf_tokenizer import HFTokenizer
from lmlab.text.tokenizer import Tokenizer

UNBOUNDED_CONTEXT = 1 << 20  # recurrent models read any length; scoring caps its windows anyway


def model_classes(kind: str) -> tuple[type[nn.Module], type]:
    """The model class and its config dataclass for a kind (gpt, lstm, ...)."""
    if kind not in MODELS:
        raise LmlabError(f"unknown model kind {kind!r}; one of {', '.join(MODELS)}", param="kind")
    module, model_name, config_name, _ = MODELS[kind]
    loaded = import_module(module)
    return getattr(loaded, model_name), getattr(loaded, config_name)


def make_config(kind: str, preset: str | None = None, **overrides):
    """A model config: the class defaults, then a named preset, then `overrides` (None skipped)."""
    _, config_class = model_classes(kind)
    presets = import_module(MODELS[kind][0]).PRESETS
    if preset is not None and preset not in presets:
        raise LmlabError(f"unknown preset {preset!r}; one of {', '.join(presets)}")
    names = {f.name for f in fields(config_class)}
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**MODELS[kind][3], **presets.get(preset, {}), **given}
    unknown = set(values) - names
    if unknown:
        raise LmlabError(f"a {kind} model has no option {', '.join(sorted(unknown))}")
    config = config_class(**values)
    _check_sizes(kind, config)
    return config


COUNTS = ("vocab_size", "context", "n_layer", "n_head", "n_embd", "n_hidden", "block")
PROBABILITIES = ("dropout", "mask_prob")


def _check_sizes(kind: str, config) -> None:
    """Sizes count something and probabilities are below 1: a one-line error here, not a
    tensor error from deep inside the model."""
    option = {field: f"--{name} ({field})" for name, field in TRAIN_CLI_OPTIONS.items()}
    for name in COUNTS + PROBABILITIES:
        value = getattr(config, name, None)
        if value is None:  # not a field of this kind of model
            continue
        rule = "must be at least 1" if name in COUNTS else "must be in [0, 1)"
        if (value < 1) if name in COUNTS else not 0 <= value < 1:
            raise LmlabError(f"{kind}: {option.get(name, name)} {rule}, got {value}")


def build_model(kind: str, config) -> nn.Module:
    """A freshly initialised model of `kind` (seed torch first for reproducible weights)."""
    model_class, _ = model_classes(kind)
    try:
        return model_class(config)
    except (ValueError, AssertionError) as e:
        raise LmlabError(f"bad {kind} configuration: {e}") from None


def save_weights(model: nn.Module, path: Path) -> None:
    """model.safetensors, written atomically (shared tied weights stored once)."""
    from safetensors.torch import save_model

    from lmlab.home import atomic_file

    with atomic_file(path) as tmp:
        save_model(_bare(model), str(tmp))


def load_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import load_model

    try:
        load_model(_bare(model), str(path), device=str(next(model.parameters()).device))
    except Exception as e:  # a truncated file, or weights of another architecture
        raise LmlabError(f"cannot load weights {path}: {str(e).splitlines()[0]}") from None


def _bare(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper."""
    return getattr(model, "module", model)


class NeuralState(State):
    """The model's memory of the rows read: a KV cache, a hidden state or a token window."""

    def __init__(self, batch_size: int, cache) -> None:
        super().__init__(batch_size)
        self.cache = cache
        self.window: torch.Tensor | None = None  # Transformers: the ids the KV cache holds


class NeuralLM(LanguageModel):
    """A model trained here, behind the LanguageModel interface (generate, score, chat).

    Texts may be longer than a Transformer's context: when its KV cache is full, the cache is
    rebuilt from the last half of the context (so every token is predicted from at least half a
    context of text before it, as nanoGPT's `generate` crops to the last block).
    """

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, *, name: str, kind: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.kind = kind
        self.context_length = UNBOUNDED_CONTEXT
        self._vocab_size = model.config.vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def new_state(self, batch_size: int = 1) -> NeuralState:
        return NeuralState(batch_size, self.model.new_cache(batch_size))

    @torch.inference_mode()
    def forward(
        self, state: NeuralState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        token_ids = token_ids.to(next(self.model.parameters()).device)
        state.length += token_ids.shape[1]
        if self.model.bounded_context:  # a Transformer: slide its window
            logits = self._windowed(state, token_ids, all_positions)
        else:  # the hidden state (RNN) or the n-1 window (MLP) holds any length
            logits = self.model(token_ids, state.cache, last_only=not all_positions)
        logits = logits.float().cpu()
        return logits if all_positions else logits[:, -1]

    def can_step(self, state: NeuralState) -> bool:
        """Every one-row state can, but a Transformer's whose cache is full (it slides first)."""
        return not self.model.bounded_context or state.cache.length < self.model.config.context

    @torch.inference_mode()
    def step_each(self, states: list[NeuralState], token_ids: list[list[int]]) -> torch.Tensor:
        """One token for each state, in one batched pass over their joined caches: (B, V)."""
        ids = torch.tensor(token_ids, device=next(self.model.parameters()).device)  # (B, 1)
        joined = type(states[0].cache).join([s.cache for s in states])
        logits = self.model(ids, joined, last_only=True)[:, -1].float().cpu()
        joined.split()
        for b, state in enumerate(states):
            state.length += 1
            if self.model.bounded_context:
                state.window = torch.cat([state.window, ids[b : b + 1]], 1)
        return logits

    def _windowed(self, state: NeuralState, ids: torch.Tensor, all_positions: bool):
        """Read `ids` through the KV cache, sliding it when the context is full."""
        context, model = self.model.config.context, self.model
        pieces = []
        while ids.shape[1]:
            if state.cache.length == context:  # full: keep the last half, recompute its cache
                state.window = state.window[:, context - context // 2 :]
                state.cache = model.new_cache(state.batch_size)
                model(state.window, state.cache, last_only=True)
            room = context - state.cache.length
            piece, ids = ids[:, :room], ids[:, room:]
            pieces.append(model(piece, state.cache, last_only=not all_positions))
            state.window = piece if state.window is None else torch.cat([state.window, piece], 1)
        return torch.cat(pieces, dim=1)

    def evaluate_file(self, path: str | Path):
        """Perplexity of a text file as the trainer's validation measures it.

        The file is read as one text and tokenized as the training corpus was; a Transformer
        or MLP then scores non-overlapping windows of its training length (each token predicted
        from the earlier tokens of its window only; the tail shorter than a window is left
        out), a recurrent model reads the whole text as one stream. Evaluating a run's own
        valid.txt therefore reproduces the final validation loss in its metrics.jsonl.

        Returns:
            an Evaluation (perplexity, loss in nats per token, tokens scored); with a
            word-level vocabulary also lines, words and OOV words (those read as <unk>).
        """
        import math

        from lmlab.evaluate import Evaluation
        from lmlab.lm.neural.scoring import encode_corpus, evaluate_loss
        from lmlab.text.tokenizer_training import read_corpus

        (text,) = read_corpus([path])
        ids = encode_corpus(self.tokenizer, [text])
        length = self.model.sequence_length
        # Recurrent: every token after the first; else whole windows only, as the trainer.
        stream = self.model.carries_state
        scored = len(ids) - 1 if stream else (len(ids) - 1) // length * length
        if scored < 1:
            raise LmlabError(
                f"{path} has {len(ids)} tokens, fewer than one window of {length + 1}",
                param="path",
            )
        loss = evaluate_loss(self.model, ids, length)
        sentences = oov = words = None  # characters and subwords have no unknown words
        if getattr(self.tokenizer, "kind", None) == "word":
            from lmlab.text.tokenizer_training import UNKNOWN

            unk = self.tokenizer.encode(UNKNOWN)
            words_of_text = text.split()
            words = len(words_of_text)
            sentences = sum(1 for line in text.splitlines() if line.strip())
            # <unk> ids, but for the corpus's own literal <unk> (PTB's): words outside the
            # vocabulary, which the model scored as <unk>
            oov = int((ids == unk[0]).sum()) - words_of_text.count(UNKNOWN) if unk else 0
        return Evaluation(
            perplexity=math.exp(loss),
            loss=loss,
            tokens=scored,
            sentences=sentences,
            oov=oov,
            words=words,
            convention="stream" if stream else f"windows of {length}",
        )


class MaskedLM:
    """A BERT run: the masked-token distribution (fill-mask) and pooled text embeddings."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, *, name: str) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        mask = [i for i in tokenizer.special_ids if tokenizer.id_to_token(i) == "[MASK]"]
        if not mask:
            raise LmlabError(f"the tokenizer of {name} has no [MASK] token")
        self.mask_id = mask[0]

    def fill_mask(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The `top_k` likeliest tokens and their probabilities at each [MASK] of `text`."""
        ids = torch.tensor([self.tokenizer.encode(text, add_special_tokens=True)])
        if not (ids == self.mask_id).any():
            raise LmlabError("the text has no [MASK] to fill")
        probs = self.model.masked_distribution(ids[:, : self.model.config.context], self.mask_id)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return [
            [(self.tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(ps, ix, strict=True)]
            for ps, ix in zip(top.values, top.indices, strict=True)
        ]

    def encode(self, texts: list[str]):
        """Mean-pooled last-layer vectors: a float32 array (n, n_embd)."""
        rows = [self.tokenizer.encode(t, add_special_tokens=True)[: self.model.config.context]
                for t in texts]  # fmt: skip
        width = max(map(len, rows))
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        keep = torch.zeros(len(rows), width, dtype=torch.bool)
        for r, row in enumerate(rows):
            ids[r, : len(row)], keep[r, : len(row)] = torch.tensor(row), True
        return self.model.embed(ids, keep).numpy()


def load_masked_lm(folder: str | Path, *, device: str = "cpu") -> MaskedLM:
    """The MaskedLM of a `lmlab train bert` run directory.

    Example:
        >>> mlm = load_masked_lm("runs/bert")
        >>> mlm.fill_mask("The [MASK] sat on the mat.")
    """
    folder = Path(folder)
    run = read_run(folder)
    if run.get("kind") != "bert":
        raise LmlabError(f"{folder} holds a {run.get('kind')!r} model, not a masked LM (bert)")
    model = build_model("bert", make_config("bert", **run["model"])).to(device)
    load_weights(model, folder / "model.safetensors")
    return MaskedLM(model, HFTokenizer(folder), name=folder.name)


def write_run_files(folder: Path, kind: str, config, train_options: dict) -> None:
    """lmlab.json and config.json of a run (the weights and tokenizer are written apart)."""
    from lmlab.home import atomic_write_text

    run = {"kind": kind, "model": asdict(config), "train": train_options}
    atomic_write_text(folder / RUN_FILE, json.dumps(run, indent=2) + "\n")
    atomic_write_text(
        folder / "config.json",
        json.dumps({"model_type": f"lmlab-{kind}", **asdict(config)}, indent=2) + "\n",
    )


def read_run(folder: Path) -> dict:
    """The parsed lmlab.json of a run directory."""
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError) as e:
        raise LmlabError(f"{folder} is not an lmlab run directory: {e}") from None


def load_run(folder: str | Path, *, device: str = "cpu", **_options) -> NeuralLM:
    """The LanguageModel of a run directory (the RUN_LOADERS entry of every neural kind).

    Example:
        >>> lm = load_run("runs/shakespeare")      # or lmlab.load_lm("runs/shakespeare")
        >>> lmlab.generate(lm, "ROMEO:", max_tokens=50).text
    """
    folder = Path(folder)
    run = read_run(folder)
    kind = run["kind"]
    config = make_config(kind, **run["model"])
    model = build_model(kind, config).to(device)
    load_weights(model, folder / "model.safetensors")
    return NeuralLM(model, HFTokenizer(folder), name=folder.name, kind=kind)
