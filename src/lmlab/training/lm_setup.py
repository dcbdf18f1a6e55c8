"""The run directory of a language model trained here: its options checked, its tokenizer,
what --init-from and --resume take from an earlier run, and the cleaning up of a run that
failed before its first checkpoint."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

from torch import nn

from lmlab.errors import LmlabError
from lmlab.lm.neural.run import make_config, read_run
from lmlab.training.checkpoint import CHECKPOINT, STATE_FILE
from lmlab.training.results import TrainConfig

TOKENIZER_KINDS = ("char", "word", "bpe", "byte-bpe", "wordpiece")


class CreatedFiles:
    """What a run is about to create in `out`, so that a run failing before its first
    checkpoint removes it: the folders it made, or in a folder the user had, the new entries
    (never the user's own files)."""

    def __init__(self, out: Path) -> None:
        self.out, self.existed = out, out.exists()
        self.before = set(os.listdir(out)) if out.is_dir() else set()
        top = out
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        self.top = top  # the outermost folder this run creates

    def remove(self) -> None:
        if not self.existed:
            shutil.rmtree(self.top, ignore_errors=True)
            return
        for name in set(os.listdir(self.out)) - self.before if self.out.is_dir() else ():
            path = self.out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def check_config(config: TrainConfig, valid, valid_fraction) -> None:
    checks = [
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.accumulate >= 1, "gradient accumulation must be at least 1"),
        (config.steps is None or config.steps >= 1, "--steps must be at least 1"),
        (config.epochs is None or config.epochs > 0, "--epochs must be positive"),
        (config.lr > 0, "--lr must be positive"),
        (config.warmup >= 0, "--warmup must be at least 0"),
        (config.weight_decay is None or config.weight_decay >= 0, "--weight-decay must be >= 0"),
        (config.grad_clip >= 0, "--grad-clip must be >= 0 (0 disables clipping)"),
        (config.patience is None or config.patience >= 1, "--patience must be at least 1"),
        (config.dtype in ("float32", "bfloat16"), "--dtype must be auto, float32 or bfloat16"),
        (config.optimizer in ("adamw", "sgd"), "--optimizer must be adamw or sgd"),
        (config.eval_every >= 1, "the evaluation interval must be at least 1"),
        (valid is None or valid_fraction is None, "give --valid or --valid-fraction, not both"),
        (valid_fraction is None or 0 < valid_fraction < 1, "--valid-fraction must be in (0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise LmlabError(message)


def prepare_tokenizer(tokenizer, corpus, out: Path, vocab_size: int | None):
    """Copy a tokenizer folder into the run, or train one of the named kinds on the corpus."""
    import tempfile

    from lmlab.text.hf_tokenizer import HFTokenizer
    from lmlab.text.tokenizer_training import train_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    if str(tokenizer) in TOKENIZER_KINDS:
        with tempfile.TemporaryDirectory(dir=out) as tmp:  # size None: every char/word seen
            train_tokenizer(corpus, Path(tmp) / "tok", kind=str(tokenizer), vocab_size=vocab_size)
            source = Path(tmp) / "tok"
            for name in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copyfile(source / name, out / name)
    else:
        source = Path(tokenizer)
        HFTokenizer(source)  # a clear error when it is not a tokenizer folder
        for name in ("tokenizer.json", "tokenizer_config.json"):
            if (source / name).is_file():
                shutil.copyfile(source / name, out / name)
    return HFTokenizer(out)


def check_fine_tune_options(source, **given) -> None:
    """Refuse the options --init-from overrides: the source run fixes the tokenizer and the
    shape, so a --tokenizer, --vocab-size or --preset would be ignored (and misrecorded)."""
    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if named:
        raise LmlabError(
            f"--init-from {source} uses that run's tokenizer and shape; "
            f"do not give {', '.join(named)}"
        )


def fine_tune_setup(source: Path, kind: str, model_options: dict | None) -> dict:
    """The model options of the run to start from (its shape, with a new dropout if given)."""
    run = read_run(source)
    if run.get("kind") != kind:
        raise LmlabError(f"{source} holds a {run.get('kind')!r} model, not {kind!r}")
    changed = {
        k for k, v in (model_options or {}).items() if k != "dropout" and run["model"].get(k) != v
    }
    if changed:
        raise LmlabError(
            f"the shape comes from --init-from {source}; do not change {', '.join(sorted(changed))}"
        )
    return {**run["model"], **(model_options or {})}


def freeze_blocks(model: nn.Module, layers: int) -> None:
    """Stop training the embeddings and the first `layers` Transformer blocks."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not 0 < layers <= len(blocks):
        count = len(blocks) if blocks is not None else 0
        raise LmlabError(
            f"--freeze takes 1 to {count} blocks of a gpt or bert model"
            if count
            else "--freeze applies to gpt and bert models (their Transformer blocks)"
        )
    frozen = [model.wte, *blocks[:layers]]
    if hasattr(model, "wpe"):
        frozen.append(model.wpe)
    for module in frozen:
        module.requires_grad_(False)


def resume_setup(out: Path, kind: str, train_options: dict, preset, model_options):
    """The tokenizer and model config of the run to resume; an error naming the options that
    differ from the run's (training options, or the model's shape: preset and overrides)."""
    from lmlab.lm.neural import TRAIN_CLI_OPTIONS
    from lmlab.text.hf_tokenizer import HFTokenizer

    if not (out / CHECKPOINT / STATE_FILE).is_file():
        raise LmlabError(f"nothing to resume in {out}: it has no checkpoint")
    run = read_run(out)
    if run.get("kind") != kind:
        raise LmlabError(f"{out} holds a {run.get('kind')!r} run, not {kind!r}: cannot resume")
    changed = [k for k, v in train_options.items() if run.get("train", {}).get(k) != v]
    asked = make_config(
        kind, preset, **{**(model_options or {}), "vocab_size": run["model"]["vocab_size"]}
    )
    cli_name = {field: name for name, field in TRAIN_CLI_OPTIONS.items()}
    changed += [
        f"{cli_name[k]} ({k})" if k in cli_name else k
        for k, v in asdict(asked).items()
        if run["model"].get(k) != v
    ]
    changed.sort()
    if changed:
        raise LmlabError(
            f"--resume needs the options of the run in {out}; these differ: {', '.join(changed)}"
        )
    return HFTokenizer(out), make_config(kind, **run["model"])


def split_corpus(corpus, valid, valid_fraction) -> tuple[list[str], str | None]:
    """Training texts and the validation text (a file, or the last fraction of the corpus)."""
    from lmlab.text.tokenizer_training import read_corpus

    texts = read_corpus(corpus)
    if valid is not None:
        return texts, read_corpus([valid])[0]
    if valid_fraction is None:
        return texts, None
    joined = "\n".join(texts) if len(texts) > 1 else texts[0]
    cut = int(len(joined) * (1 - valid_fraction))  # the last characters, as nanoGPT splits
    return [joined[:cut]], joined[cut:]
