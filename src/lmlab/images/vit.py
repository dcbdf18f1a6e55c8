"""A small Vision Transformer (Dosovitskiy et al. 2021): the image cut into patch x patch
squares, each linearly embedded, a learned [CLS] vector and learned positions added, pre-norm
Transformer blocks, and the final [CLS] state as the image's features.

Design choices: patches by one strided convolution (the same as a linear map of each flattened
patch); pre-norm blocks (LayerNorm before attention and MLP, as GPT-2 and ViT); attention by
torch's scaled_dot_product_attention; a 4x GELU MLP. On 28x28 images a patch of 4 gives 49
patches, and the model is small enough for a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class ViTConfig:
    image_size: int = 28  # images are resized to image_size x image_size
    channels: int = 1  # 1: grey, 3: RGB
    patch: int = 4  # side of a square patch; must divide image_size
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1

    @property
    def dimension(self) -> int:
        return self.n_embd


PRESETS = {
    "tiny": {"n_layer": 1, "n_head": 2, "n_embd": 32},  # tests and docs
    "small": {},  # the defaults: 0.8M weights
}


class Block(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        C = config.n_embd
        self.n_head, self.dropout = config.n_head, config.dropout
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C),
                                 nn.Dropout(config.dropout))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, nh, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """(B, channels, S, S) images in [-1, 1] -> (B, n_embd) features (the final [CLS] state).

    Example:
        >>> ViT(ViTConfig(n_layer=1, n_head=2, n_embd=32))(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 32])
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if config.image_size % config.patch:
            raise ValueError(
                f"the patch ({config.patch}) must divide the image size ({config.image_size})"
            )
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd {config.n_embd} must be a multiple of n_head {config.n_head}")
        self.config = config
        C, n_patches = config.n_embd, (config.image_size // config.patch) ** 2
        self.patches = nn.Conv2d(config.channels, C, config.patch, stride=config.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, C))
        self.pos = nn.Parameter(torch.randn(1, n_patches + 1, C) * 0.02)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(C)

    @property
    def dimension(self) -> int:
        return self.config.dimension

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patches(x).flatten(2).transpose(1, 2)  # (B, n_patches, C)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x[:, 0])  # (B, C): the [CLS] state
