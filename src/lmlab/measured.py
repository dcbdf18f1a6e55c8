"""Choices that depend on the CPU, made by measurement once per machine and kept in the cache.

Which path is fastest differs from CPU to CPU: on an Intel Xeon with AMX, torch's bfloat16
encodes sentences fastest and llama.cpp decodes one sequence faster from the bundled Q4_1 file;
on an AMD EPYC with AVX2 only, bfloat16 is slow and the Q8_0 copy wins. So lmlab measures each
such choice the first time it is needed (a second or two) and keeps the result in
`$LMLAB_HOME/measured/<key>.json`, keyed by the CPU (model, flags, cores) and the versions of
the libraries that compute (torch, onnxruntime, llama-cpp-python, lmlab). A file of another
CPU or version is never read: the choice is measured again. Each result records the load average
it was taken under. On a machine busier than its cores (load average per core above BUSY) the
figures are noisy: such a result is kept marked "busy" and serves until a process finds the
machine quiet, which measures it again. Deleting the folder measures everything again.

LMLAB_MEASURE=0 skips measuring: every choice takes its fixed default (tests and CI runs whose
results must not depend on the machine they run on).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from lmlab.home import atomic_write_text, lmlab_home

MEASURE_ENV = "LMLAB_MEASURE"
MARGIN = 1.05  # another path must be this much faster than the default one to be chosen
LIBRARIES = ("torch", "onnxruntime", "llama-cpp-python", "lmlab")
BUSY = 1.0  # load average per core above which a measurement is marked busy (redone when quiet)


def machine() -> dict[str, Any]:
    """What a measurement depends on: the CPU (model, flags, cores) and the library versions."""
    return copy.deepcopy(_machine())


@functools.cache
def _machine() -> dict[str, Any]:  # read once per process
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    model, flags = cpu_model_and_flags()
    return {"cpu": model, "flags": flags, "cores": os.cpu_count(), "versions": versions}


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and feature flags (Linux: /proc/cpuinfo; elsewhere: what the
    platform module knows, and no flags)."""
    model, flags = "", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = sorted(value.split())
    return model or platform.processor() or platform.machine(), flags


def measuring() -> bool:
    """False when LMLAB_MEASURE is 0 (or false, no, off): fixed defaults, nothing measured."""
    return os.environ.get(MEASURE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def measured(name: str, measure: Callable[[], dict], default: dict) -> dict:
    """The result of `measure()` on this machine: kept from an earlier run, or measured now.

    Args:
        name: what is chosen (e.g. "encoder <content key>"), one entry of the machine's file.
        measure: takes the measurement; returns a JSON-able dict (the choice and its figures).
        default: the result without measuring (LMLAB_MEASURE=0).

    Returns:
        The result, with "measured": True and the load average it was measured under (and
        "busy": True if that was above BUSY per core: it is measured again by the first
        process that finds the machine quiet), or `default` with "measured": False.
    """
    if not measuring():
        return {**default, "measured": False}
    key = machine()
    known = _read(key)
    load = _load_average()
    quiet = not busy(load, key["cores"])
    if name in known and not (known[name].get("busy") and quiet):
        return known[name]
    result = {**measure(), "measured": True, "load_average": load}
    if not quiet:
        result["busy"] = True
    known = _read(key)  # another process may have added its own choices meanwhile
    known[name] = result
    with contextlib.suppress(OSError):  # a read-only cache: measured again next time
        atomic_write_text(_file(key), json.dumps({"machine": key, "choices": known}, indent=1))
    return result


def fastest(speeds: dict[str, float], prefer: str, margin: float = MARGIN) -> str:
    """The fastest key of `speeds`, unless `prefer` (the default path) is within `margin` of
    it: a moment of other work on a shared machine does not flip a choice kept for good."""
    best = max(speeds, key=speeds.get)
    return prefer if prefer in speeds and speeds[best] <= margin * speeds[prefer] else best


def busy(load: float | None, cores: int | None) -> bool:
    """Whether a load average means other work would skew a measurement on `cores` cores."""
    return load is not None and load > BUSY * (cores or 1)


def choices() -> dict[str, dict]:
    """Every choice measured on this machine so far, by name (nothing is measured here)."""
    return _read(machine())


def _load_average() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _file(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return lmlab_home() / "measured" / f"{digest}.json"


def _read(key: dict) -> dict[str, dict]:
    """The choices kept for `key`; none if the file is absent, damaged or of another machine."""
    try:
        data = json.loads(_file(key).read_text())
        if data["machine"] == key and isinstance(data["choices"], dict):
            return data["choices"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}
