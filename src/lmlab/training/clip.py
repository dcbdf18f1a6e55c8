"""`train_clip()`: an image tower and a text encoder aligned in one space (CLIP-style).

The images (a folder, a .npy array or an IDX file) and one caption or label per image are
read; captions made from labels by templates when the data has labels only (clip/captions.py);
the images converted to the tower's channels and size; a share held out for validation. With a
frozen text encoder its vectors of every caption are computed once. The one loop (loop.py)
trains the model (clip/model.py) on the Clip objective (objectives/clip.py): resume, metrics
and loss.png come with it.

The run directory: lmlab.json ({"kind": "clip", "model": {ClipConfig}, "train": {options},
"captions": {labels, classes, names, templates}}), model.safetensors (the image tower, the
projections, the temperature, and the text tower when it trained), checkpoint/,
metrics.jsonl, loss.png.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER
from lmlab.runs import RUN_FILE
from lmlab.training.checkpoint import CHECKPOINT, ModelWeights, resumable_run
from lmlab.training.results import TrainConfig, TrainResult

KIND = "clip"
# Training defaults where CLIP differs from a language model: many in-batch negatives.
DEFAULTS = {"batch_size": 256, "lr": 2e-3, "warmup": 50, "eval_every": 100}
TEXT_LR_SCALE = 0.02  # a text encoder that trains moves at 1/50 of the peak learning rate


def clip_config(**given) -> TrainConfig:
    """A TrainConfig with CLIP's defaults for what is not given."""
    return TrainConfig(**{**DEFAULTS, **{k: v for k, v in given.items() if v is not None}})


def train_clip(
    images: str | Path | np.ndarray | list,
    captions: str | Path | list[str],
    out: str | Path,
    *,
    image_encoder: str = "cnn",
    text_encoder: str = DEFAULT_ENCODER,
    freeze_text: bool = False,
    preset: str | None = None,
    image_options: dict | None = None,
    dim: int = 128,
    labels: bool | None = None,
    templates: list[str] | None = None,
    classes: str | Path | dict[str, list[str]] | None = None,
    valid_fraction: float = 0.05,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool | Callable[[dict], None] = True,
) -> TrainResult:
    """Align an image tower with a text encoder on image-caption pairs; write a run in `out`.

    Args:
        images: a folder of image files, a .npy array (N, H, W[, 3]), an IDX file, or uint8
            arrays. Images of other sizes than the tower's are resized.
        captions: one entry per image, in order (a folder's files sorted by name): a text
            file (a caption a line), or labels (.npy, IDX, or a text file with `labels=True`).
        out: the run directory. A run that fails before its first checkpoint removes it.
        image_encoder: cnn or vit (lmlab/images/).
        text_encoder: an encoder name or folder (default: the bundled all-minilm-l6-v2).
        freeze_text: keep the text encoder as it is (its caption vectors computed once).
        preset: the tower's preset (tiny, small: the default); `image_options` override its
            fields (image_size, channels, widths, patch, n_layer, ...).
        dim: the shared space's dimension.
        labels: captions are labels (default: True for .npy and IDX files, or when templates
            or classes are given).
        templates: caption templates with {label} (default: clip.captions.TEMPLATES).
        classes: a classes file (line i names class i; synonyms split by '|') or a dict
            label -> names.
        valid_fraction: images held out for validation (loss, zero-shot accuracy).
        config: optimisation settings (TrainConfig); batch_size counts pairs. Default:
            clip_config() (batch 256, lr 2e-3).
        resume: continue the run in `out` from its checkpoint, exactly.
        progress: a progress bar (True), none (False), or a callback of the loop's events.

    Example:
        >>> train_clip("fashion/train-images-idx3-ubyte.gz", "fashion/train-labels-idx1-ubyte.gz",
        ...            "runs/clip", classes="fashion/classes.txt", freeze_text=True)
    """
    from lmlab.training import lm_setup as setup
    from lmlab.training.devices import pick_device, pick_dtype

    config = config or clip_config()
    out = Path(out)
    if not 0 <= valid_fraction < 1:
        raise LmlabError("--valid-fraction must be in [0, 1)", param="valid_fraction")
    if dim < 1:
        raise LmlabError("--dim must be at least 1", param="dim")
    device = pick_device(config.device)
    config = replace(config, dtype=pick_dtype(config.dtype, device))
    pictures, names, texts = _read_data(images, captions)
    is_labels = labels if labels is not None else _labels_by_default(captions, templates, classes)
    caption_info = _caption_info(texts, is_labels, templates, classes)
    options = {k: v for k, v in asdict(config).items() if k != "log_every"}
    options.update(images=_describe(images), captions=_describe(captions),
                   image_encoder=image_encoder, text_encoder=str(text_encoder),
                   freeze_text=freeze_text, preset=preset, image_options=image_options or {},
                   dim=dim, valid_fraction=valid_fraction)  # fmt: skip
    created = setup.CreatedFiles(out)
    try:
        loop = _setup(pictures, names, texts, caption_info, out, options, config=config,
                      device=device, resume=resume, progress=progress)  # fmt: skip
        return loop.run()
    except BaseException:
        if not resume and not (out / CHECKPOINT).exists():
            created.remove()
        raise


def _describe(source) -> str:
    return str(source) if isinstance(source, str | Path) else f"<{len(source)} in memory>"


def _labels_by_default(captions, templates, classes) -> bool:
    from lmlab.images.files import IDX_LABELS, idx_magic

    if templates or classes:
        return True
    if isinstance(captions, str | Path):
        path = Path(captions)
        return path.suffix.lower() == ".npy" or (path.is_file() and idx_magic(path) == IDX_LABELS)
    return False


def _read_data(images, captions) -> tuple:
    """(images, their names, one caption or label string per image)."""
    from lmlab.images.files import read_images, read_labels

    if isinstance(images, str | Path):
        pictures, names = read_images(images)
    else:
        pictures, names = images, [str(i) for i in range(len(images))]
    texts = (
        read_labels(captions) if isinstance(captions, str | Path) else [str(c) for c in captions]
    )
    if len(texts) != len(pictures):
        raise LmlabError(
            f"{_describe(images)} holds {len(pictures)} images but {_describe(captions)} "
            f"{len(texts)} captions or labels: give one per image"
        )
    if len(pictures) < 2:
        raise LmlabError("CLIP training needs at least two images (in-batch negatives)")
    return pictures, names, texts


def _caption_info(texts: list[str], is_labels: bool, templates, classes) -> dict:
    """What captions are made of: the classes, their names and the templates (labels), or the
    distinct captions themselves."""
    from lmlab.clip.captions import TEMPLATES, check_templates, read_class_names

    if not is_labels:
        return {"labels": False}
    templates = check_templates(templates or TEMPLATES)
    if isinstance(classes, str | Path):
        names = read_class_names(classes)
    else:
        names = {str(k): list(v) for k, v in (classes or {}).items()}
    found = sorted(
        set(texts), key=lambda s: (0, int(s), s) if s.lstrip("-").isdigit() else (1, 0, s)
    )
    unknown = sorted(set(names) - set(found))
    if names and unknown and len(unknown) == len(names):
        raise LmlabError(f"the classes file names labels the data does not have: {unknown[:5]}")
    return {"labels": True, "classes": found, "names": names, "templates": templates}


def caption_table(texts: list[str], info: dict):
    """(bank of texts, groups (N,), start (G,), count (G,)) for ImageCaptionBatches."""
    from lmlab.clip.captions import caption_bank

    if info["labels"]:
        bank, options = caption_bank(info["classes"], info["names"], info["templates"])
        index = {c: i for i, c in enumerate(info["classes"])}
        groups = [index[t] for t in texts]
    else:  # each distinct caption is a group (an image's own, or shared by equal captions)
        index: dict[str, int] = {}
        groups = [index.setdefault(t, len(index)) for t in texts]
        bank, options = list(index), [[i] for i in range(len(index))]
    start = torch.tensor([o[0] for o in options], dtype=torch.long)
    count = torch.tensor([len(o) for o in options], dtype=torch.long)
    return bank, torch.tensor(groups, dtype=torch.long), start, count


def tower_config(image_encoder: str, preset: str | None, options: dict, pictures) -> dict:
    """The tower's config fields: its defaults, the preset, the data's size and channels, and
    the options given; unknown options are an error."""
    from lmlab.images import tower_classes

    _, config_class, presets = tower_classes(image_encoder)
    if preset is not None and preset not in presets:
        raise LmlabError(f"unknown preset {preset!r}; one of {', '.join(presets)}", param="preset")
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise LmlabError(f"a {image_encoder} image encoder has no option {', '.join(unknown)}")
    first = np.asarray(pictures[0])
    data = {"image_size": int(max(first.shape[:2])),
            "channels": 3 if first.ndim == 3 and first.shape[-1] == 3 else 1}  # fmt: skip
    values = {**presets.get(preset or "small", {}), **data, **options}
    return asdict(config_class(**values))


def _setup(pictures, names, texts, info, out: Path, options: dict, *, config, device, resume,
           progress):  # fmt: skip
    from lmlab.clip.model import ClipConfig, ClipModel
    from lmlab.images.files import to_pixels
    from lmlab.training.loop import Loop
    from lmlab.training.objectives.clip import CaptionBank, Clip, ImageCaptionBatches
    from lmlab.training.progress import progress_callback

    run = resumable_run(out, KIND, options, resume)
    if run is not None:
        shape = ClipConfig(**run["model"])
    else:
        image = tower_config(options["image_encoder"], options["preset"],
                             options["image_options"], pictures)  # fmt: skip
        shape = ClipConfig(image_encoder=options["image_encoder"], image=image,
                           text_encoder=options["text_encoder"],
                           freeze_text=options["freeze_text"], dim=options["dim"])  # fmt: skip
    bank, groups, start, count = caption_table(texts, info)
    text_tower, caption_bank = None, None
    if shape.freeze_text:
        from lmlab.embed.load import load_encoder

        encoder = load_encoder(shape.text_encoder)
        vectors = encoder.encode(bank, batch_size=64, normalize_embeddings=True)
        caption_bank = CaptionBank(vectors=torch.from_numpy(vectors))
        shape = replace(shape, text_dimension=encoder.dimension)
    else:
        text_tower = text_tower_of(shape)
        caption_bank = CaptionBank(ids=text_tower.tokenize(bank))
        shape = replace(shape, text_dimension=text_tower.dimension)
    torch.manual_seed(config.seed)
    model = ClipModel(shape, text_tower).to(device)  # a bad shape: an error before pixel work
    size, channels = shape.image["image_size"], shape.image["channels"]
    pixels = torch.from_numpy(to_pixels(pictures, size, channels, names))
    order = torch.from_numpy(np.random.default_rng(config.seed).permutation(len(pixels)))
    n_valid = round(len(pixels) * options["valid_fraction"])
    if n_valid == 1 or len(pixels) - n_valid < 2:
        n_valid = 0  # one held-out pair has no negatives to be scored against
    valid_rows, train_rows = order[:n_valid], order[n_valid:]
    batches = ImageCaptionBatches(pixels[train_rows], groups[train_rows], start, count,
                                  config.batch_size, config.seed)  # fmt: skip
    valid = (pixels[valid_rows], groups[valid_rows]) if n_valid else None
    objective = Clip(batches, caption_bank, device, valid=valid, batch_size=config.batch_size,
                     classes=len(start) if info["labels"] else None,
                     eval_batches=config.eval_batches)  # fmt: skip
    steps_per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.accumulate))
    total = config.steps or (math.ceil(config.epochs * steps_per_epoch) if config.epochs else 1000)
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        write_run_file(out, shape, options, info)
        (out / "metrics.jsonl").unlink(missing_ok=True)
    return Loop(model, objective, _optimizer(model, config), config, total=total, out=out,
                device=device, weights=ModelWeights(model), resume=resume,
                progress=progress_callback(progress, unit="pairs_s"),
                ylabel="symmetric InfoNCE")  # fmt: skip


def text_tower_of(shape):
    """The TextTower of a text encoder that trains: a transformers folder or bundled name."""
    from lmlab.clip.model import TextTower
    from lmlab.models import resolve

    ref = resolve(shape.text_encoder)
    if ref.kind != "hf":
        raise LmlabError(
            f"--text-encoder {shape.text_encoder} cannot train here (a transformers folder or "
            "bundled encoder can); pass --freeze-text to use it as it is",
            param="text_encoder",
        )
    return TextTower(ref.path, shape.max_text_length)


def _optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW as optimizer_for (decay on matrices), the text tower at TEXT_LR_SCALE of the
    rate: the loop multiplies each group's rate by its lr_scale."""
    from lmlab.training.optim import optimizer_for

    if model.text_tower is None:
        return optimizer_for(model, config)
    decay = config.weight_decay if config.weight_decay is not None else 0.1
    groups = []
    for scale, named in ((1.0, [(n, p) for n, p in model.named_parameters()
                                if not n.startswith("text_tower.")]),
                         (TEXT_LR_SCALE, list(model.text_tower.named_parameters()))):  # fmt: skip
        params = [p for _, p in named if p.requires_grad]
        groups.append({"params": [p for p in params if p.dim() >= 2], "weight_decay": decay,
                       "lr_scale": scale})  # fmt: skip
        groups.append({"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0,
                       "lr_scale": scale})  # fmt: skip
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, config.beta2), fused=True)


def write_run_file(out: Path, shape, options: dict, info: dict) -> None:
    from lmlab.home import atomic_write_text

    run = {"kind": KIND, "model": asdict(shape), "train": options, "captions": info}
    atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2) + "\n")
