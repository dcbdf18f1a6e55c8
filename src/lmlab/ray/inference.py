"""Batch inference on Ray: embed, classify, score and generate over large inputs.

Each function reads its input with Ray Data (see lmlab.ray.io), maps it through an actor pool
whose actors load the model once (lmlab.ray.workers), and returns the lazy Ray Dataset: chain
your own Ray steps, or write it with `lmlab.ray.write_parquet`. Rows keep their input order
(Ray Data's preserve_order) and their `id`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER, DEFAULT_LM
from lmlab.ray import workers
from lmlab.ray.io import IO_TASK, columns, input_format, read_input, require_column
from lmlab.ray.runtime import require_ray

# Rows per block: the unit one actor takes at a time. Small enough that every actor gets work
# from a single input file, large enough that a block costs far more than its scheduling.
BLOCK_ROWS = {"embed": 1024, "classify": 1024, "score": 64, "generate": 8}


def embed(
    data: Any,
    *,
    model: str | Path = DEFAULT_ENCODER,
    column: str = "text",
    batch_size: int = 32,
    dimensions: int | None = None,
    dtype: str = "float32",
    backend: str = "auto",
    static: bool = False,
    workers: int | None = None,
    cpus_per_worker: float = 1,
) -> Any:
    """Embed every text of `data` on Ray: a Dataset of id, text and embedding.

    Args:
        data: a path or URL (text, CSV, TSV, JSONL, Parquet, or a folder of them), or a Ray
            Dataset with a `column` of texts.
        model: encoder name or folder (as `lmlab.load_encoder`), loaded once per actor.
        column: the column of texts (a text file's lines are "text").
        workers: actors in the pool (default: the cluster's CPUs / cpus_per_worker).
        cpus_per_worker: cores each actor reserves (and its encoder's threads).

    Example:
        >>> ds = lmlab.ray.embed("s3://bucket/speeches.parquet", column="speech")
        >>> lmlab.ray.write_parquet(ds, "speeches_vectors")
    """
    from lmlab.embed.batch import DTYPES

    if dtype not in DTYPES:
        raise LmlabError(f"dtype must be one of {', '.join(DTYPES)}", param="dtype")
    if batch_size < 1:
        raise LmlabError("batch_size must be at least 1", param="batch_size")
    ds = _input(data, column, "embed")
    args = (str(model), column, batch_size, dimensions, dtype, backend, static)
    return map_with_pool(ds, workers_cls("embed"), args, workers, cpus_per_worker)


def classify(
    data: Any,
    folder: str | Path,
    *,
    column: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
) -> Any:
    """Label every text of `data` with a classifier saved by `lmlab classify fit`: the input's
    columns, then `predicted` and one p_<class> column per class.

    Args:
        data: a path, URL or Ray Dataset (see `embed`).
        folder: the classifier's folder (every node must see it at this path).
        column: the text column (default: guessed by name, as `lmlab classify predict`).
    """
    from lmlab.classify.classifier import TextClassifier
    from lmlab.classify.data import TEXT_NAMES, find_column

    classes = TextClassifier.load(folder).classes_  # a bad folder fails here, once
    ray = require_ray()
    ds = read_input(data, ray, BLOCK_ROWS["classify"])
    names = columns(ds, data)
    if column is None:
        column = find_column(names, TEXT_NAMES)
        if column is None:
            raise LmlabError(
                f"cannot tell which column holds the texts (columns: {', '.join(names)}); "
                "pass --text-col",
                param="text_col",
            )
    require_column(ds, data, column)
    added = ["predicted", *(f"p_{c}" for c in classes)]
    if clash := next((c for c in added if c in names), None):
        raise LmlabError(f"the input has a column {clash!r} already: predict adds it; rename it")
    args = (str(Path(folder).resolve()), column)
    return map_with_pool(ds, workers_cls("classify"), args, workers, cpus_per_worker)


def score(
    data: Any,
    *,
    model: str | Path = DEFAULT_LM,
    backend: str = "auto",
    column: str = "text",
    window: int = 1024,
    stride: int = 512,
    workers: int | None = None,
    cpus_per_worker: float = 1,
) -> Any:
    """Perplexity of every text of `data` on its own: a Dataset of id, tokens, logprob (nats)
    and perplexity (NaN for a text under two tokens)."""
    if window < 2 or not 1 <= stride <= window:
        raise LmlabError("need window >= 2 and 1 <= stride <= window")
    ds = _input(data, column, "score")
    args = (str(model), backend, column, window, stride)
    return map_with_pool(ds, workers_cls("score"), args, workers, cpus_per_worker)


def generate(
    data: Any,
    *,
    model: str | Path = DEFAULT_LM,
    backend: str = "auto",
    column: str = "prompt",
    sampling_defaults: str = "model",
    workers: int | None = None,
    cpus_per_worker: float = 1,
    **options: Any,
) -> Any:
    """Continue every prompt of `data`: a Dataset of id, the prompt, completion and
    finish_reason. `options` are `lmlab.generate`'s (max_tokens, temperature, seed, stop...);
    temperature=0 gives the same text as one process."""
    from lmlab.sampling import SamplingParams
    from lmlab.sampling_defaults import check_choice

    SamplingParams.from_options(options)  # a bad option fails before any model is loaded
    check_choice(sampling_defaults)
    ds = _input(data, column, "generate")
    args = (str(model), backend, column, {"sampling_defaults": sampling_defaults, **options})
    return map_with_pool(ds, workers_cls("generate"), args, workers, cpus_per_worker)


def workers_cls(kind: str) -> type:
    """The actor class of a kind of run."""
    return {
        "embed": workers.EmbedWorker,
        "classify": workers.ClassifyWorker,
        "score": workers.ScoreWorker,
        "generate": workers.GenerateWorker,
    }[kind]


def _input(data: Any, column: str, kind: str) -> Any:
    """The input with its `id`; a text file's lines are the `column` whatever its name (as
    on one process)."""
    ray = require_ray()
    ds = read_input(data, ray, BLOCK_ROWS[kind])
    is_text = not isinstance(data, ray.data.Dataset) and input_format(str(data)) == "text"
    if is_text and column != "text":
        ds = ds.rename_columns({"text": column})
    require_column(ds, data, column)
    return ds


def map_with_pool(
    ds: Any,
    worker: type,
    args: tuple,
    n_workers: int | None,
    cpus_per_worker: float,
) -> Any:
    """`ds` mapped by an actor pool of `worker(*args)`, in order.

    Args:
        worker: the actor class (lmlab.ray.workers, or a subclass of one).
        n_workers: actors (default: the cluster's CPUs / cpus_per_worker, at least 1).
        cpus_per_worker: cores each actor reserves; Ray sets its OMP_NUM_THREADS to match.
    """
    ray = require_ray()
    if cpus_per_worker <= 0:
        raise LmlabError("--cpus-per-worker must be above 0", param="cpus_per_worker")
    if n_workers is None:
        cpus = ray.cluster_resources().get("CPU", 1)
        n_workers = max(1, int(cpus // cpus_per_worker))
    if n_workers < 1:
        raise LmlabError("--workers must be at least 1", param="workers")
    ds.context.execution_options.preserve_order = True  # rows leave in the order they came
    return ds.map_batches(
        worker,
        fn_constructor_args=args,
        batch_format="pyarrow",
        batch_size=None,  # a whole block per call: the worker batches within it
        compute=ray.data.ActorPoolStrategy(size=n_workers),
        num_cpus=cpus_per_worker,
    )


__all__ = ["IO_TASK", "classify", "embed", "generate", "map_with_pool", "score"]
