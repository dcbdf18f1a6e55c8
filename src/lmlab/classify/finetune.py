"""Fine-tuning a Transformer encoder for classification: all of it, its top layers, or LoRA.

The model is the encoder's pooled sentence vector (mean over real tokens for MiniLM, as when it
embeds) followed by a new head, dropout then one linear layer: logits = W · dropout(pool(h)) + b.
It is trained end to end by cross-entropy in the one training loop (`lmlab.training`, the
sequence-classification objective): AdamW with weight decay on matrices only, linear warm-up then
cosine decay, gradient clipping, seeding, device choice, checkpoints and exact resume (`fit`'s
`workdir`; without one, a temporary folder that is removed afterwards).

  finetune  every weight moves; `freeze=K` keeps the embeddings and the first K layers fixed,
            `freeze="all"` the whole encoder (the head alone learns: a logit on fixed vectors,
            with dropout).
  lora      the encoder stays fixed; every linear layer inside its Transformer layers gets a
            low-rank update W + (alpha / r) · B A (Hu et al. 2021, via peft) that learns with the
            head. It saves only A, B and the head: a few hundred kilobytes.

Batches hold texts of similar length (sorted within random pools of 50 batches), so a batch of
short SST-2 phrases is not padded to the length of its longest review. `max_minutes` is a time
budget: the cosine schedule is laid over whichever ends first, the epochs or the budget.

Encoders: the bundled all-minilm-l6-v2, any transformers encoder folder (AutoModel), or a BERT
run of ours (`lmlab train bert`).
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from lmlab.classify.method import Method, class_indices
from lmlab.errors import LmlabError
from lmlab.home import atomic_dir, atomic_file
from lmlab.models import DEFAULT_ENCODER, resolve
from lmlab.runs import RUN_FILE
from lmlab.training.objectives.classify import length_sorted_epoch
from lmlab.training.objectives.classify import pad as _pad

# Options and their defaults, found with short runs on SST-2 (see README: fine-tuning).
DEFAULTS: dict[str, Any] = {
    "encoder": DEFAULT_ENCODER,
    "freeze": 0,  # 0: train everything; K: embeddings and the first K layers fixed; "all"
    "epochs": 1.0,
    "lr": 1e-4,  # 4,000 SST-2 texts, 1 epoch: 1.5e-4 gave 0.850 dev accuracy, 5e-5 0.822
    "batch_size": 32,
    "max_length": 128,  # tokens per text, [CLS] and [SEP] included
    "seed": 0,
    "max_minutes": None,  # a time budget for training; None: the epochs decide
    "dropout": 0.1,  # before the head
    "warmup": 0.06,  # the share of the steps spent warming up (as RoBERTa's fine-tuning)
    "weight_decay": 0.01,
    "device": "auto",
    "dtype": "float32",  # or bfloat16: autocast, the weights stay float32; auto: where native
}
LORA_DEFAULTS: dict[str, Any] = {
    **DEFAULTS,
    "lr": 1e-3,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
}
# Besides the weights, what a saved encoder folder keeps of the original.
ENCODER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.txt", RUN_FILE, "config.json", "sentence_bert_config.json")  # fmt: skip


class PooledEncoder(nn.Module):
    """token ids (B, T) and attention mask (B, T) -> one vector per text (B, C)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        run = None
        if (folder / RUN_FILE).is_file():
            from lmlab.lm.neural.run import read_run

            run = read_run(folder)
            # a sentence-encoder run (lmlab train simcse / contrastive) of a transformers
            # encoder is a transformers folder with a run file
            if run.get("kind") == "sentence-encoder" and run.get("base") != "bert":
                run = None
        if run is not None:  # a BERT run of ours, or a sentence-encoder run made from one
            from lmlab.lm.neural.run import build_model, load_weights, make_config

            if run.get("kind") not in ("bert", "sentence-encoder"):
                raise LmlabError(f"{folder} holds a {run.get('kind')!r} model, not an encoder")
            self.body = build_model("bert", make_config("bert", **run["model"]))
            load_weights(self.body, folder / "model.safetensors")
            self.ours, self.pooling = True, "mean"
            self.dimension, self.window = self.body.config.n_embd, self.body.config.context
        else:
            from transformers import AutoModel

            from lmlab.embed.transformer import folder_pooling

            try:
                self.body = AutoModel.from_pretrained(
                    folder, local_files_only=True, attn_implementation="sdpa"
                )
            except Exception as e:  # unreadable weights, config or architecture
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise LmlabError(f"cannot load an encoder from {folder}: {first}") from None
            self.ours, self.pooling = False, folder_pooling(folder)
            self.dimension = int(self.body.config.hidden_size)
            self.window = int(getattr(self.body.config, "max_position_embeddings", 0) or 512)
        self.pad_id = 0 if self.ours else int(self.body.config.pad_token_id or 0)

    def parts(self) -> tuple[list[nn.Module], nn.ModuleList]:
        """The embedding modules and the list of Transformer layers (what freeze counts)."""
        if self.ours:
            return [self.body.wte, self.body.wpe], self.body.blocks
        body = self.body
        layers = getattr(getattr(body, "encoder", None), "layer", None)
        layers = layers if layers is not None else getattr(body, "transformer", None)
        layers = getattr(layers, "layer", layers)  # DistilBERT: transformer.layer
        if not isinstance(layers, nn.ModuleList) or not hasattr(body, "embeddings"):
            raise LmlabError(f"cannot find the layers of a {type(body).__name__} to freeze")
        return [body.embeddings], layers

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.ours:
            states = self.body.hidden_states(ids, mask.bool())  # (B, T, C)
        else:
            states = self.body(input_ids=ids, attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return states[:, 0]
        m = mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        if self.pooling == "max":
            return states.masked_fill(m == 0, -1e9).max(dim=1).values
        return (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)  # mean over real tokens


class EncoderClassifier(nn.Module):
    """A pooled encoder and a new head: logits (B, classes)."""

    def __init__(self, encoder: PooledEncoder, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.dimension, n_classes))
        nn.init.normal_(self.head[1].weight, std=0.02)
        nn.init.zeros_(self.head[1].bias)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ids, mask))


class FineTune(Method):
    """A Transformer encoder with a new head, trained end to end (or its top layers only).

    Args:
        encoder: all-minilm-l6-v2 (default), a transformers encoder folder or a BERT run.
        freeze: 0 trains every weight; K keeps the embeddings and the first K layers fixed;
            "all" trains the head only.
        epochs: passes over the training texts.
        lr: the peak learning rate (AdamW), reached after the warm-up.
        batch_size: texts per step.
        max_length: tokens per text (longer texts are cut).
        seed: fixes the head's start, dropout and the batch order.
        max_minutes: stop training after this many minutes (the schedule fits the budget).

    Example:
        >>> m = FineTune(epochs=1).fit(texts, y, ["negative", "positive"])
        >>> m.predict_proba(["a gripping, funny film"])
    """

    name = "finetune"
    defaults: ClassVar[dict[str, Any]] = DEFAULTS

    def __init__(self, **options: Any) -> None:
        known = self.defaults
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise LmlabError(
                f"the {self.name} method has no option {', '.join(unknown)}; "
                f"its options: {', '.join(known)}",
                param=unknown[0],
            )
        self.options = {**known, **options}
        _check_options(self.options)
        self.info = {}

    # -- building -------------------------------------------------------------------------

    def _build(self, folder: Path, n_classes: int) -> EncoderClassifier:
        """The classifier over the encoder in `folder`, with the requested weights trainable."""
        model = EncoderClassifier(PooledEncoder(folder), n_classes, self.options["dropout"])
        freeze = self.options["freeze"]
        if freeze == "all":
            model.encoder.requires_grad_(False)
        elif freeze:
            embeddings, layers = model.encoder.parts()
            if freeze > len(layers):
                raise LmlabError(
                    f"freeze={freeze}, but the encoder has {len(layers)} layers: give 0 to "
                    f"{len(layers)}, or 'all' for the head only",
                    param="freeze",
                )
            for module in [*embeddings, *layers[:freeze]]:
                module.requires_grad_(False)
        return model

    def _setup(self, texts: list[str]):
        """The tokenizer of the encoder, and the texts as lists of token ids."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self._folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(min(self.options["max_length"], self.model_.encoder.window))
        self.tokenizer_ = tokenizer
        return [e.ids for e in tokenizer.encode_batch(texts)]

    # -- the Method interface -------------------------------------------------------------

    def fit(
        self,
        texts: list[str],
        y: np.ndarray,
        classes: list[str],
        *,
        progress: bool = True,
        workdir: str | Path | None = None,
        resume: bool = False,
    ) -> FineTune:
        """Train the encoder and head on `texts` with class indices `y`.

        `workdir` keeps the training's checkpoint/, metrics.jsonl and loss.png (none given: a
        temporary folder, removed after); `resume` continues the run in it, exactly.
        """
        from lmlab.training.devices import pick_device

        opts = self.options
        torch.manual_seed(opts["seed"])  # the head's start and the LoRA matrices
        self._folder = _encoder_folder(opts["encoder"])
        self.model_ = self._build(self._folder, len(classes))
        self.classes_ = list(classes)
        ids = self._setup(texts)
        device = pick_device(opts["device"])
        self.model_.to(device)
        y = class_indices(y, self.classes_)  # labels ("negative") or indices
        self.info = _train(self.model_, ids, np.asarray(y), opts, device, progress,
                           workdir=workdir, resume=resume)  # fmt: skip
        self.info["trainable_parameters"] = sum(
            p.numel() for p in self.model_.parameters() if p.requires_grad
        )
        self.model_.eval()
        return self

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Class probabilities, a float array (len(texts), classes) whose rows sum to 1."""
        if not hasattr(self, "model_"):
            raise LmlabError("this method is not fitted yet: call fit first")
        model = self.model_.eval()
        device = next(model.parameters()).device
        ids = [e.ids for e in self.tokenizer_.encode_batch(list(texts))]
        out = np.empty((len(ids), len(self.classes_)), np.float32)
        order = np.argsort([len(row) for row in ids], kind="stable")
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            batch, mask = _pad([ids[i] for i in rows], model.encoder.pad_id)
            logits = model(batch.to(device), mask.to(device))
            out[rows] = logits.float().softmax(-1).cpu().numpy()
        return out

    def save(self, folder: Path) -> None:
        """encoder/ (a complete encoder folder with the tuned weights) and head.safetensors."""
        from safetensors.torch import save_file

        body = self.model_.encoder.body
        with atomic_dir(Path(folder) / "encoder") as tmp:
            if self.model_.encoder.ours:
                from lmlab.lm.neural.run import save_weights

                save_weights(body, tmp / "model.safetensors")
            else:
                body.save_pretrained(tmp, safe_serialization=True)
            _copy_encoder_files(self._folder, tmp)
        with atomic_file(Path(folder) / "head.safetensors") as tmp:
            save_file(_contiguous(self.model_.head.state_dict()), str(tmp))

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> FineTune:
        """The method saved by `save` in `folder`."""
        method = cls(**options)
        method._folder = Path(folder) / "encoder"
        method.classes_ = list(classes)
        method.model_ = method._build(method._folder, len(classes))
        _load_into(method.model_.head, Path(folder) / "head.safetensors")
        method._setup([])
        method.model_.eval()
        return method


class LoRA(FineTune):
    """LoRA adapters on every linear layer of the encoder's Transformer layers, and a new head.

    Args:
        lora_r: the rank r of each update B A.
        lora_alpha: the update is scaled by alpha / r.
        lora_dropout: dropout on the adapters' input.
        (and the options of FineTune but freeze)

    Example:
        >>> m = LoRA(lora_r=8).fit(texts, y, ["negative", "positive"])
    """

    name = "lora"
    defaults: ClassVar[dict[str, Any]] = LORA_DEFAULTS

    def _build(self, folder: Path, n_classes: int) -> EncoderClassifier:
        from peft import LoraConfig, inject_adapter_in_model

        model = EncoderClassifier(PooledEncoder(folder), n_classes, self.options["dropout"])
        _, layers = model.encoder.parts()
        inside = {id(m) for layer in layers for m in layer.modules()}
        targets = [
            name
            for name, m in model.encoder.named_modules()
            if isinstance(m, nn.Linear) and id(m) in inside
        ]
        config = LoraConfig(
            r=self.options["lora_r"],
            lora_alpha=self.options["lora_alpha"],
            lora_dropout=self.options["lora_dropout"],
            target_modules=targets,
        )
        model.encoder = inject_adapter_in_model(config, model.encoder)
        for name, p in model.encoder.named_parameters():
            p.requires_grad_("lora_" in name)  # the base weights stay as they were
        return model

    def save(self, folder: Path) -> None:
        """adapter.safetensors: the LoRA matrices and the head (the encoder is not copied)."""
        from safetensors.torch import save_file

        state = {k: v for k, v in self.model_.state_dict().items() if _is_adapter_or_head(k)}
        with atomic_file(Path(folder) / "adapter.safetensors") as tmp:
            save_file(_contiguous(state), str(tmp))

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> LoRA:
        """The base encoder named in `options`, with the adapter and head saved in `folder`."""
        method = cls(**options)
        method._folder = _encoder_folder(method.options["encoder"])
        method.classes_ = list(classes)
        method.model_ = method._build(method._folder, len(classes))
        _load_into(method.model_, Path(folder) / "adapter.safetensors", partial=True)
        method._setup([])
        method.model_.eval()
        return method


# -- training ---------------------------------------------------------------------------------


def _train(model, ids, y, opts, device, progress, *, workdir, resume) -> dict[str, Any]:
    """Cross-entropy training over length-bucketed batches, in the training loop; what
    happened, for `info`. `max_minutes` is a time budget: the cosine schedule is laid over
    whichever ends first, the epochs or the budget."""
    from dataclasses import replace

    from lmlab.classify.fit_loop import fit_with_loop
    from lmlab.training.devices import pick_dtype
    from lmlab.training.objectives.classify import LengthBatches, SequenceClassification
    from lmlab.training.optim import optimizer_for
    from lmlab.training.results import TrainConfig

    batch_size = opts["batch_size"]
    per_epoch = math.ceil(len(ids) / batch_size)
    total = max(1, math.ceil(opts["epochs"] * per_epoch))
    config = TrainConfig(
        steps=total,
        batch_size=batch_size,
        lr=opts["lr"],
        min_lr=0.0,
        warmup=round(opts["warmup"] * total),
        weight_decay=opts["weight_decay"],
        beta2=0.999,  # Adam's usual: fine-tuning takes many steps of little data each
        eval_every=per_epoch,  # a checkpoint every epoch (and at the end)
        log_every=1,
        seed=opts["seed"],
        dtype=opts["dtype"],
    )
    config = replace(config, dtype=pick_dtype(config.dtype, device))
    optimizer = optimizer_for(model, config)
    source = LengthBatches(ids, torch.as_tensor(y, dtype=torch.long), batch_size,
                           model.encoder.pad_id, opts["seed"])  # fmt: skip
    objective = SequenceClassification(source, device, units_per_batch=batch_size)
    budget = opts["max_minutes"] * 60 if opts["max_minutes"] else None
    cpu_start = time.process_time()
    result = fit_with_loop(model, objective, optimizer, config, total=total, device=device,
                           workdir=workdir, resume=resume, progress=progress,
                           prefix="lmlab-finetune-", budget=budget)  # fmt: skip
    loss_avg = math.nan
    for record in result.history:  # a smoothed training loss, as the bar showed it
        if "loss" in record:
            value = record["loss"]
            loss_avg = value if math.isnan(loss_avg) else 0.98 * loss_avg + 0.02 * value
    return {"steps": result.steps, "epochs": round(source.seen / len(ids), 3),
            "train_loss": loss_avg, "train_seconds": round(result.seconds, 1),
            "train_cpu_seconds": round(time.process_time() - cpu_start, 1)}  # fmt: skip


def _batches(ids: list[list[int]], batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Epoch after epoch, batches (row numbers) of texts of similar length, in random order."""
    while True:
        yield from length_sorted_epoch(ids, batch_size, rng)


# -- helpers ----------------------------------------------------------------------------------


def _encoder_folder(spec: str) -> Path:
    """The folder of an encoder spec (bundled name, transformers folder or BERT run)."""
    ref = resolve(spec)
    if ref.kind not in ("hf", "run"):
        raise LmlabError(
            f"{spec} is not an encoder: give all-minilm-l6-v2, a transformers encoder folder "
            "or a BERT run (lmlab train bert)",
            param="encoder",
        )
    return ref.path


def _copy_encoder_files(source: Path, target: Path) -> None:
    """What an encoder folder needs besides its weights: tokenizer, run file, pooling."""
    for name in ENCODER_FILES:
        if (source / name).is_file() and not (target / name).exists():
            shutil.copyfile(source / name, target / name)
    if (source / "1_Pooling").is_dir():
        shutil.copytree(source / "1_Pooling", target / "1_Pooling")


def _is_adapter_or_head(name: str) -> bool:
    return "lora_" in name or name.startswith("head.")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def _load_into(module: nn.Module, path: Path, *, partial: bool = False) -> None:
    """Load safetensors weights into `module`; a clear error when they do not fit it."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
        missing, unexpected = module.load_state_dict(state, strict=False)
        missing = [k for k in missing if not partial or _is_adapter_or_head(k)]
        if missing or unexpected:
            raise ValueError(f"{len(missing)} missing and {len(unexpected)} unexpected tensors")
    except Exception as e:  # a truncated file, or weights of another encoder
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LmlabError(
            f"cannot load {path}: {first}; was it saved with this encoder?", param="encoder"
        ) from None


def _check_options(opts: dict[str, Any]) -> None:
    freeze = opts["freeze"]
    checks = [
        (freeze == "all" or (isinstance(freeze, int) and freeze >= 0), "freeze",
         "freeze must be a number of layers (0 or more) or 'all'"),
        (opts["epochs"] > 0, "epochs", "epochs must be positive"),
        (opts["lr"] > 0, "lr", "lr must be positive"),
        (opts["batch_size"] >= 1, "batch_size", "batch_size must be at least 1"),
        (opts["max_length"] >= 3, "max_length", "max_length must be at least 3 tokens"),
        (opts["max_minutes"] is None or opts["max_minutes"] > 0, "max_minutes",
         "max_minutes must be positive"),
        (0 <= opts["dropout"] < 1, "dropout", "dropout must be in [0, 1)"),
        (0 <= opts["warmup"] < 1, "warmup", "warmup is a share of the steps, in [0, 1)"),
    ]  # fmt: skip
    if "lora_r" in opts:  # LoRA keeps the whole encoder fixed and learns the adapters
        checks.append((opts["lora_r"] >= 1, "lora_r", "lora_r must be at least 1"))
        checks.append((not freeze, "freeze", "freeze does not apply to lora: its encoder is fixed"))
    for ok, param, message in checks:
        if not ok:
            raise LmlabError(message, param=param)
