"""Image inputs: a folder of image files (PNG, JPEG, ... read by Pillow), a .npy array of
images, or an IDX file (the MNIST format, gzipped or not); and labels beside them.

Images come back as uint8 arrays, (H, W) for grey and (H, W, 3) for colour. `to_batch` turns a
list of them into the float tensor an image tower reads: every image converted to the tower's
channels and resized (bilinear) to its square size, scaled to [-1, 1].

A string names an image (`is_image_path`) when it ends in an image file's suffix and either
names a file or holds no space: encoders of image and text (lmlab.clip) read such strings as
images, so a table's image column works wherever a text column does.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IDX_IMAGES, IDX_LABELS = 0x803, 0x801  # the magic numbers of IDX files of images, of labels


def is_image_path(text: str) -> bool:
    """Whether a string names an image file (see the module docstring)."""
    if not text.lower().endswith(IMAGE_SUFFIXES) or "\n" in text:
        return False
    return " " not in text.strip() or Path(text).is_file()


def read_image(path: str | Path) -> np.ndarray:
    """One image file as uint8 (H, W) or (H, W, 3); a one-line error naming a bad file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"no such image file: {path}", param="input")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "RGB"):
                image = image.convert("L" if image.mode in ("1", "I", "I;16", "F") else "RGB")
            return np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise LmlabError(f"cannot read {path} as an image: {_first_line(e)}") from None


def image_files(folder: str | Path) -> list[Path]:
    """The image files of a folder, sorted by name; any other file is an error naming it
    (hidden files, such as .DS_Store, are skipped)."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for p in files:
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            raise LmlabError(
                f"{p} is not an image file ({', '.join(IMAGE_SUFFIXES)}); an image folder "
                "holds only images"
            )
    if not files:
        raise LmlabError(f"{folder} holds no image files")
    return files


def read_images(path: str | Path) -> tuple[list[np.ndarray] | np.ndarray, list[str]]:
    """The images of a folder, a .npy array (N, H, W) or (N, H, W, 3), or an IDX file; and
    their names (file names, or positions "0", "1", ... in an array)."""
    path = Path(path)
    if path.is_dir():
        files = image_files(path)
        return [read_image(p) for p in files], [p.name for p in files]
    if not path.is_file():
        raise LmlabError(f"no such file or folder: {path}", param="images")
    if path.suffix.lower() == ".npy":
        array = _load_npy(path)
    elif idx_magic(path) == IDX_IMAGES:
        array = read_idx(path)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        return [read_image(path)], [path.name]
    else:
        raise LmlabError(
            f"{path} is not an image input: give a folder of images, a .npy array of "
            "images or an IDX file",
            param="images",
        )
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[-1] not in (1, 3)):
        raise LmlabError(
            f"{path} holds an array of shape {array.shape}; images are (N, H, W) or (N, H, W, 3)"
        )
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    return _as_uint8(array, path), [str(i) for i in range(len(array))]


def read_labels(path: str | Path) -> list[str]:
    """Labels, one per image: a .npy array, an IDX labels file, or a text file (a line each)."""
    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"no such file: {path}", param="captions")
    if path.suffix.lower() == ".npy":
        array = _load_npy(path)
    elif idx_magic(path) == IDX_LABELS:
        array = read_idx(path)
    else:
        from lmlab.text.files import open_text

        with open_text(path) as f:
            return [line.strip() for line in f if line.strip()]
    if array.ndim != 1:
        raise LmlabError(f"{path} holds an array of shape {array.shape}; labels are (N,)")
    return [str(v) for v in array.tolist()]


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format: magic, dimension sizes, then unsigned bytes)."""
    path = Path(path)
    data = _raw(path)
    magic = int.from_bytes(data[:4], "big")
    if magic not in (IDX_IMAGES, IDX_LABELS, 0x802):
        raise LmlabError(f"{path} is not an IDX file of unsigned bytes")
    n_dims = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * n_dims)
    if body.size != int(np.prod(shape)):
        raise LmlabError(f"{path} is cut short: {body.size} bytes for a shape of {shape}")
    return body.reshape(shape).copy()  # writable (frombuffer's view of bytes is not)


def _raw(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise LmlabError(f"cannot read {path}: {_first_line(e)}") from None


def idx_magic(path: Path) -> int | None:
    """The first four bytes of a file (gzipped or not) as a number: an IDX file's magic."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            first = f.read(4)
    except (OSError, EOFError):
        return None
    return int.from_bytes(first, "big") if len(first) == 4 else None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise LmlabError(f"cannot read {path} as a .npy array: {_first_line(e)}") from None


def _as_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """uint8 pixels: floats in [0, 1] are scaled by 255; other values must lie in [0, 255]."""
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise LmlabError(f"{path} does not hold numbers")
    if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
        array = array * 255.0
    if array.size and (array.min() < 0 or array.max() > 255):
        raise LmlabError(f"{path}: pixel values must lie in [0, 255] (or [0, 1] for floats)")
    return np.rint(array).astype(np.uint8)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def to_pixels(
    images: list[np.ndarray] | np.ndarray, size: int, channels: int, names: list[str] | None = None
) -> np.ndarray:
    """uint8 (N, channels, size, size): each image converted to grey (1) or RGB (3) and
    resized (bilinear) when it is not size x size already."""
    grey_stack = isinstance(images, np.ndarray) and images.ndim == 3 and channels == 1
    if grey_stack and images.shape[1:] == (size, size):  # the fast path: no conversion
        return images[:, None]
    out = np.empty((len(images), channels, size, size), np.uint8)
    for i, image in enumerate(images):
        out[i] = _one(image, size, channels, names[i] if names else str(i))
    return out


def _one(image: np.ndarray, size: int, channels: int, name: str) -> np.ndarray:
    from PIL import Image

    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise LmlabError(f"image {name} has shape {image.shape}; expected (H, W) or (H, W, 3)")
    if image.ndim == 2 and channels == 3:
        image = np.repeat(image[..., None], 3, axis=-1)
    elif image.ndim == 3 and channels == 1:  # ITU-R 601 luma, as Pillow's "L"
        image = np.asarray(Image.fromarray(image, "RGB").convert("L"))
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image[None] if image.ndim == 2 else image.transpose(2, 0, 1)


def to_batch(pixels):
    """A float tensor in [-1, 1] of uint8 pixels (N, C, S, S), numpy or torch: what a tower
    reads."""
    import torch

    if not isinstance(pixels, torch.Tensor):
        pixels = torch.from_numpy(np.ascontiguousarray(pixels))
    return pixels.float().div_(127.5).sub_(1.0)
