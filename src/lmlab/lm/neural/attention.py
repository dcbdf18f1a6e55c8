"""Scaled dot-product attention as the Transformer models here call it.

Under bfloat16 autocast on a CPU, attention runs in float32 while the projections around it
stay in bfloat16: the CPU flash-attention kernel's bfloat16 backward is about 3x slower than
its float32 one (torch 2.13; Tiny Shakespeare GPT, 12 x 4 heads x 64 positions x 32), which
had cancelled bfloat16's 2x on the matrix products. A model that works on the queries and keys
before attending (rotary positions) takes them to float32 once with `in_attention_dtype`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _under_cpu_autocast(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def in_attention_dtype(x: torch.Tensor) -> torch.Tensor:
    """`x` in the dtype `attention` computes in: float32 under CPU autocast, else as it is."""
    return x.float() if _under_cpu_autocast(x) else x


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options) -> torch.Tensor:
    """`F.scaled_dot_product_attention(q, k, v, **options)`, in float32 under CPU autocast."""
    if _under_cpu_autocast(q):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **options)
    return F.scaled_dot_product_attention(q, k, v, **options)
