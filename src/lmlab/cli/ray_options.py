"""The `--ray` options of the commands that read large inputs, and how they run a Ray job."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lmlab.errors import LmlabError

RayOpt = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on a Ray cluster (--ray-address) or a local Ray runtime; --out is then a "
        "folder of Parquet files. Needs: pip install 'lmlab[ray]'.",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        help="With --ray: actors, each holding the model (default: cluster CPUs / "
        "--cpus-per-worker).",
        min=1,
    ),
]
CpusPerWorkerOpt = Annotated[
    float, typer.Option("--cpus-per-worker", help="With --ray: cores per actor.", min=0.01)
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --ray: the cluster to join, host:port (default: $RAY_ADDRESS, else a local "
        "Ray runtime on this machine).",
    ),
]


def check_ray_options(ray: bool, out: Path | None, address: str | None, workers: int | None):
    """Ray-only options without --ray, or --ray without --out: a one-line error, at once."""
    if not ray and (address is not None or workers is not None):
        raise LmlabError("--workers and --ray-address need --ray", param="ray")
    if ray and out is None:
        raise LmlabError("--ray writes a folder of Parquet files: give it with --out", param="out")


def check_local_input(source: str, column: str | None) -> None:
    """A local file's mistakes (missing, no such column in a CSV/TSV/Parquet header) caught
    before Ray starts, so that they are one line, not one line after Ray's start-up logs."""
    if "://" in source or not Path(source).is_file():
        if "://" not in source and not Path(source).exists():
            raise LmlabError(f"no such file: {source}", param="file")
        return  # a folder or a URL: Ray's readers check it
    from lmlab.embed.batch import iter_texts

    iter_texts(source, column)  # checks the header of a table as it opens it


def run_on_ray(build: Callable[[], Any], out: Path, address: str | None) -> int:
    """Join the cluster (or start a local runtime), build the Dataset, write it to OUT; the
    rows written. A failed run leaves no OUT that looks complete (see write_parquet)."""
    from lmlab.ray import ray_session, write_parquet
    from lmlab.ray.io import one_line

    with ray_session(address) as ray:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # Ray's bars and logs would bury the one line
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            return write_parquet(build(), out)
        except LmlabError:
            raise
        except ray.exceptions.RayError as e:
            cause = _lmlab_cause(e)
            if cause is not None:
                raise cause from None
            raise LmlabError(f"the Ray run failed: {one_line(e)}") from None


def _lmlab_cause(error: BaseException) -> LmlabError | None:
    """The LmlabError a worker raised (Ray wraps it), if that is what stopped the run."""
    seen = error
    for _ in range(5):
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None:
            return None
        if isinstance(cause, LmlabError):
            return LmlabError(str(cause))
        seen = cause
    return None
