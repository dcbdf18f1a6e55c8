"""Joining a Ray cluster, or starting a local Ray runtime, for lmlab's batch inference.

Ray is optional (`pip install 'lmlab[ray]'`): nothing here imports it until a Ray run starts,
so `import lmlab` works without it. The address follows Ray's own convention: the one given,
else the `RAY_ADDRESS` environment variable, else a local runtime on this machine's cores. An
address that cannot be reached fails in one line within seconds (a TCP probe before Ray's own
connection attempt, which would retry for a minute or more).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from lmlab.errors import LmlabError
from lmlab.ray.io import one_line

INSTALL = "pip install 'lmlab[ray]'"
PROBE_SECONDS = 10.0  # how long an address may take to accept a TCP connection


def require_ray() -> Any:
    """The `ray` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # the [data] extra: pyarrow, pandas and fsspec come with it
    except ImportError:
        raise LmlabError(f"--ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """Yield the `ray` module connected to a cluster; a runtime started here is shut down after.

    Args:
        address: a cluster (host:port, ray://host:port or "auto"); default: `RAY_ADDRESS`, else
            a local runtime.
        num_cpus: cores of a local runtime (default: all of this machine's).

    A session already open in this process (the user's own `ray.init`) is used as it is.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    # Offline by default: no usage statistics leave the machine.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address:
            _probe(address)
            ray.init(address=address, **quiet)
        else:
            _absolute_pythonpath()
            ray.init(num_cpus=num_cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
        raise LmlabError(f"cannot start or join {where}: {one_line(e)}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """Fail at once when a host:port address does not accept connections ("auto" and
    "local" are Ray's own words: Ray answers those quickly itself)."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise LmlabError(
            f"a Ray address is host:port or ray://host:port, not {address!r}", param="ray_address"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise LmlabError(
            f"cannot reach the Ray cluster at {address}: {reason} (is the head node running?)",
            param="ray_address",
        ) from None


def _absolute_pythonpath() -> None:
    """Make PYTHONPATH's folders absolute: Ray's workers inherit it but not the working folder,
    so `PYTHONPATH=src` would import another lmlab in them (or none)."""
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if any(entries):
        os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(e) for e in entries if e)
