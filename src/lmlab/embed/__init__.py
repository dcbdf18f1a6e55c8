"""Encoders (text -> vectors) and what is written once on top of them: similarity, search,
clustering, maps and batch embedding of files."""

from lmlab.embed.base import Encoded, Encoder
from lmlab.embed.load import encode, load_encoder

__all__ = ["Encoded", "Encoder", "encode", "load_encoder"]
