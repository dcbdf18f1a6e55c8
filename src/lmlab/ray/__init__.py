"""Batch inference beyond one machine: embed, classify, score and generate on a Ray cluster.

Ray is optional (`pip install 'lmlab[ray]'`); this package imports it only when a function
runs. Each function returns a lazy Ray Dataset in the input's order, with an `id` column:

    >>> import ray, lmlab.ray
    >>> ray.init()                                   # or ray.init(address="head:6379")
    >>> ds = lmlab.ray.embed("speeches.csv", column="speech", workers=8)
    >>> lmlab.ray.write_parquet(ds, "speech_vectors")   # a folder of Parquet files
"""

from lmlab.ray.inference import classify, embed, generate, map_with_pool, score
from lmlab.ray.io import read_input, read_parquet_folder, write_parquet
from lmlab.ray.runtime import ray_session, require_ray

__all__ = [
    "classify",
    "embed",
    "generate",
    "map_with_pool",
    "ray_session",
    "read_input",
    "read_parquet_folder",
    "require_ray",
    "score",
    "write_parquet",
]
