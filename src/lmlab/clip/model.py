"""The CLIP-style model: an image tower and a text encoder, each followed by a linear projection
into one d-dimensional space, and a learned temperature (Radford et al. 2021).

Design choices, after CLIP: projections without bias, vectors L2-normalised in the shared space,
the inverse temperature learned as a log (initialised to 1/0.07 and capped at 100). The text
side is a sentence encoder (the bundled all-MiniLM-L6-v2 by default): its mean-pooled,
normalised vector is what the projection reads. With `freeze_text` it does not train, so its
vectors of the captions are computed once and training runs only the image tower and the two
projections; else it is part of this module (TextTower) and trains with the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from lmlab.clip.loss import symmetric_info_nce
from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER

MAX_SCALE = math.log(100.0)  # CLIP caps the inverse temperature at 100


@dataclass
class ClipConfig:
    image_encoder: str = "cnn"  # cnn or vit (lmlab.images.TOWERS)
    image: dict = field(default_factory=dict)  # the tower's config fields (CNNConfig, ViTConfig)
    text_encoder: str = DEFAULT_ENCODER  # an encoder name or path
    text_dimension: int = 384  # the text encoder's vectors
    freeze_text: bool = False
    dim: int = 128  # the shared space
    temperature: float = 0.07  # the initial temperature (it is learned)
    max_text_length: int = 64  # tokens per caption for a text tower that trains


def image_tower(config: ClipConfig) -> nn.Module:
    """The image tower a ClipConfig names (a clear error for a bad shape)."""
    from lmlab.images import tower_classes

    model_class, config_class, _ = tower_classes(config.image_encoder)
    try:
        return model_class(config_class(**config.image))
    except (TypeError, ValueError) as e:
        raise LmlabError(f"{config.image_encoder}: {e}", param="image_encoder") from None


class TextTower(nn.Module):
    """A transformers encoder that trains: mean pooling over real tokens, L2-normalised (what
    lmlab's TransformerEncoder computes for all-MiniLM-L6-v2)."""

    def __init__(self, folder: Path, max_length: int) -> None:
        super().__init__()
        from tokenizers import Tokenizer as RawTokenizer
        from transformers import AutoModel

        from lmlab._offline import quiet_transformers

        try:
            with quiet_transformers():
                self.model = AutoModel.from_pretrained(folder, local_files_only=True)
            self.tokenizer = RawTokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # unreadable weights, config or tokenizer
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise LmlabError(f"cannot load a text encoder from {folder}: {first}") from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.dimension = int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, C)
        w = mask[..., None].to(states.dtype)
        pooled = (states * w).sum(1) / w.sum(1).clamp(min=1)
        return F.normalize(pooled, dim=-1)


def pad_ids(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, T) and attention mask (1 at tokens)."""
    width = max(1, max(map(len, rows)))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[r, : len(row)] = 1
    return ids, mask


class ClipModel(nn.Module):
    """The towers' projections into one space and the temperature (the text tower too, when
    it trains).

    Args:
        config: ClipConfig.
        text_tower: the TextTower when the text side trains (not frozen), else None.

    Example:
        >>> m = ClipModel(ClipConfig(image={"widths": [8, 16]}))
        >>> m.encode_image(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 128])
    """

    def __init__(self, config: ClipConfig, text_tower: TextTower | None = None) -> None:
        super().__init__()
        self.config = config
        self.image_tower = image_tower(config)
        self.image_proj = nn.Linear(self.image_tower.dimension, config.dim, bias=False)
        self.text_proj = nn.Linear(config.text_dimension, config.dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.temperature)))
        self.text_tower = text_tower

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [-1, 1] -> (B, dim), L2-normalised."""
        return F.normalize(self.image_proj(self.image_tower(pixels)), dim=-1)

    def project_text(self, vectors: torch.Tensor) -> torch.Tensor:
        """The text encoder's normalised vectors (B, text_dimension) -> (B, dim), normalised."""
        return F.normalize(self.text_proj(vectors), dim=-1)

    def encode_text_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token ids through the training text tower and the projection."""
        return self.project_text(self.text_tower(ids, mask))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.clamp(max=MAX_SCALE)

    def forward(self, pixels: torch.Tensor, text: tuple, groups: torch.Tensor) -> torch.Tensor:
        """The symmetric InfoNCE loss of a batch: images, their captions ((vectors,) from a
        frozen encoder, or (ids, mask)), and each pair's group (see loss.py)."""
        image = self.encode_image(pixels)
        words = self.project_text(text[0]) if len(text) == 1 else self.encode_text_ids(*text)
        return symmetric_info_nce(image.float(), words.float(), self.scale(), groups)
