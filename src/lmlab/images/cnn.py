"""A small convolutional image tower: stages of 3x3 convolutions with batch norm and GELU,
each stage but the last halving the resolution (max pooling), then the mean over positions.

Design choices: batch norm (Ioffe & Szegedy 2015) makes a small CNN train in few epochs;
global average pooling (Lin et al. 2014) makes the feature size independent of the image size,
so one config reads 28x28 Fashion-MNIST and 32x32 photographs alike. The feature vector is the
last stage's channels; a CLIP-style run projects it into the shared space (lmlab.clip).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class CNNConfig:
    image_size: int = 28  # images are resized to image_size x image_size
    channels: int = 1  # 1: grey, 3: RGB
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # channels per stage
    convs: int = 1  # 3x3 convolutions per stage (2 costs ~4x the time on 28x28 images)
    dropout: float = 0.1  # before the pooled features

    @property
    def dimension(self) -> int:
        return self.widths[-1]


PRESETS = {
    "tiny": {"widths": [8, 16]},  # tests and docs: a few thousand weights
    "small": {},  # the defaults: 94k weights
}


class CNN(nn.Module):
    """(B, channels, S, S) images in [-1, 1] -> (B, widths[-1]) features.

    Example:
        >>> CNN(CNNConfig(widths=[8, 16]))(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 16])
    """

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width_in = config.channels
        for i, width in enumerate(config.widths):
            for conv_in in [width_in] + [width] * (config.convs - 1):
                layers += [nn.Conv2d(conv_in, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.GELU()]  # fmt: skip
            if i < len(config.widths) - 1:
                layers.append(nn.MaxPool2d(2))  # S -> S // 2
            width_in = width
        self.stages = nn.Sequential(*layers)
        self.drop = nn.Dropout(config.dropout)

    @property
    def dimension(self) -> int:
        return self.config.dimension

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)  # (B, widths[-1], S', S')
        return self.drop(x.mean(dim=(2, 3)))  # (B, widths[-1])
