"""What this CPU computes natively: decides where bfloat16 autocast pays and where it cannot run."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_has_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (Linux: its /proc/cpuinfo flags)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return False
    flags = {f for line in lines if line.startswith("flags") for f in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})
