"""The ImageEncoder interface: images -> float32 vectors, one row per image; beside the text
Encoder (base.py). An encoder of both (a CLIP-style run) implements both, into one space.

`encode_images` takes what an image input can be: a folder of image files, a .npy array or an
IDX file (a path), a list of image paths, or uint8 arrays (N, H, W) / (N, H, W, 3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from lmlab.embed.base import finish


class ImageEncoder(ABC):
    """A function from an image to a vector. Subclasses set `name`, `dimension` and implement
    `_encode_pixels(images, batch_size) -> (n, dimension)` (raw, unnormalized rows)."""

    name: str = "image-encoder"
    dimension: int

    @abstractmethod
    def _encode_pixels(self, images: list[np.ndarray] | np.ndarray, batch_size: int) -> np.ndarray:
        """Unnormalized float32 vectors (n, dimension) of uint8 images."""

    def encode_images(
        self,
        images: str | Path | list[str] | list[np.ndarray] | np.ndarray,
        *,
        batch_size: int = 256,
        normalize: bool = True,
    ) -> np.ndarray:
        """Embed images: a float32 array (n, d).

        Example:
            >>> enc = lmlab.load_encoder("runs/clip")
            >>> enc.encode_images("photos/").shape        # a folder of PNG/JPEG files
        """
        from lmlab.images.files import read_image, read_images

        if isinstance(images, str | Path):
            images, _ = read_images(images)
        elif isinstance(images, list) and images and isinstance(images[0], str | Path):
            images = [read_image(p) for p in images]
        if len(images) == 0:
            return np.zeros((0, self.dimension), np.float32)
        return finish(self._encode_pixels(images, batch_size), None, normalize)
