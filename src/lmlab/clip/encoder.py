"""A CLIP-style run as an encoder of texts and images into one space.

`encode(items)` reads each string that names an image file (images.files.is_image_path: a
.png, .jpg, ... path) as that image, and any other string as text: a table whose column holds
image paths works wherever a column of texts does (`lmlab embed`, `lmlab index build` then
`lmlab search` with a text, `lmlab classify` zero-shot via cosine, `lmlab map`).
`encode_images` takes images as arrays or files (embed/image_base.py); `zero_shot` classifies
images by the nearest class prompts (averaged over templates: a prompt ensemble).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lmlab.clip.model import ClipConfig, ClipModel, pad_ids
from lmlab.embed.base import Encoded, Encoder
from lmlab.embed.image_base import ImageEncoder
from lmlab.errors import LmlabError


class ClipEncoder(Encoder, ImageEncoder):
    """Texts and images in the shared space of a run of `lmlab train clip`.

    Example:
        >>> enc = lmlab.load_encoder("runs/clip")
        >>> enc.encode(["a photo of a sandal", "shoes/0001.png"]).shape
        (2, 128)
    """

    def __init__(self, model: ClipModel, *, name: str, text_encoder=None, captions=None) -> None:
        self.model = model.eval()
        self.config: ClipConfig = model.config
        self.name = name
        self.dimension = self.config.dim
        self.text_encoder = text_encoder  # the frozen text encoder; None: the model's tower
        self.captions = captions or {"labels": False}  # how the run made its captions
        self.max_length = text_encoder.max_length if text_encoder else self.config.max_text_length
        self.tokenizer = text_encoder.tokenizer if text_encoder else None

    # -- texts and images together ----------------------------------------------------------

    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        from lmlab.images.files import is_image_path, read_image

        is_image = [is_image_path(t) for t in texts]
        out = np.empty((len(texts), self.dimension), np.float32)
        images = [i for i, yes in enumerate(is_image) if yes]
        words = [i for i, yes in enumerate(is_image) if not yes]
        n_tokens = n_truncated = 0
        if images:
            out[images] = self._encode_pixels([read_image(texts[i]) for i in images], batch_size)
        if words:
            encoded = self._encode_texts([texts[i] for i in words], batch_size)
            out[words], n_tokens, n_truncated = (
                encoded.vectors,
                encoded.n_tokens,
                encoded.n_truncated,
            )
        return Encoded(out, n_tokens=n_tokens, n_truncated=n_truncated)

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str], batch_size: int) -> Encoded:
        if self.text_encoder is not None:
            encoded = self.text_encoder.encode_with_stats(texts, batch_size=batch_size)
            vectors = torch.from_numpy(encoded.vectors)
            rows = [self.model.project_text(vectors[i : i + batch_size])
                    for i in range(0, len(vectors), batch_size)]  # fmt: skip
            return Encoded(torch.cat(rows).numpy(), encoded.n_tokens, encoded.n_truncated)
        tower = self.model.text_tower
        ids = tower.tokenize(texts)
        rows = [self.model.encode_text_ids(*pad_ids(ids[i : i + batch_size]))
                for i in range(0, len(ids), batch_size)]  # fmt: skip
        return Encoded(torch.cat(rows).numpy(), n_tokens=sum(map(len, ids)))

    @torch.inference_mode()
    def _encode_pixels(self, images, batch_size: int) -> np.ndarray:
        from lmlab.images.files import to_batch, to_pixels

        size, channels = self.config.image["image_size"], self.config.image["channels"]
        rows = []
        for i in range(0, len(images), batch_size):
            pixels = to_pixels(images[i : i + batch_size], size, channels)
            rows.append(self.model.encode_image(to_batch(pixels)))
        return torch.cat(rows).numpy()

    # -- zero-shot ----------------------------------------------------------------------------

    def class_vectors(self, classes: list[list[str]] | list[str], templates=None) -> np.ndarray:
        """(n_classes, d): for each class (a name, or a list of synonyms), the normalised mean
        of its captions' vectors, every template with every name (a prompt ensemble)."""
        from lmlab.clip.captions import check_templates

        templates = check_templates(templates or self.captions.get("templates") or ["{label}"])
        rows = []
        for names in classes:
            names = [names] if isinstance(names, str) else list(names)
            v = self.encode([t.format(label=n) for n in names for t in templates]).mean(axis=0)
            rows.append(v / max(np.linalg.norm(v), 1e-12))
        return np.stack(rows).astype(np.float32)

    def zero_shot(self, images, classes, templates=None) -> np.ndarray:
        """Class indices (n,) of images by the nearest class vector (see class_vectors).

        Example:
            >>> enc.zero_shot("photos/", ["sandal", "sneaker"])
            array([0, 1, 1, ...])
        """
        anchors = self.class_vectors(classes, templates)
        return (self.encode_images(images) @ anchors.T).argmax(axis=1)


def load_clip(folder: str | Path, **_options) -> ClipEncoder:
    """The encoder of a run of `lmlab train clip` (lmlab.load_encoder reads it by its kind)."""
    from lmlab.lm.neural.run import load_weights
    from lmlab.runs import read_run

    folder = Path(folder)
    run = read_run(folder)
    config = ClipConfig(**run["model"])
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise LmlabError(f"{folder} has no model.safetensors: its training has not saved yet")
    text_encoder = tower = None
    if config.freeze_text:
        from lmlab.embed.load import load_encoder

        text_encoder = load_encoder(config.text_encoder)
    else:
        from lmlab.training.clip import text_tower_of

        tower = text_tower_of(config)
    model = ClipModel(config, tower)
    load_weights(model, weights)
    return ClipEncoder(model, name=folder.name, text_encoder=text_encoder,
                       captions=run.get("captions"))  # fmt: skip
