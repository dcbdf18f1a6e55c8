"""A real two-node Ray cluster on this machine (one CPU each): `lmlab.ray.embed` runs on both
nodes and writes what one process writes (issue 34)."""

import os
from pathlib import Path

import numpy as np
import pytest

import lmlab
from lmlab.embed.batch import embed_file, read_embeddings

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


def test_embedding_on_two_nodes_equals_one_process(tmp_path, monkeypatch):
    import ray.cloudpickle
    import ray_workers
    from ray.cluster_utils import Cluster

    ray.cloudpickle.register_pickle_by_value(ray_workers)
    src = str(Path(lmlab.__file__).resolve().parents[1])  # the nodes import this lmlab
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    data = tmp_path / "texts.txt"
    data.write_text("".join(f"document {i} on the river bank\n" for i in range(240)))
    embed_file(data, tmp_path / "plain.parquet", progress=False)  # also exports the encoder once
    ids, _, vectors = read_embeddings(tmp_path / "plain.parquet")

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        with lmlab.ray.ray_session(cluster.address) as session:
            assert len([n for n in session.nodes() if n["Alive"]]) == 2
            ds = lmlab.ray.read_input(str(data), session, block_rows=20)  # 12 blocks
            args = ("all-minilm-l6-v2", "text", 32, None, "float32", "auto", False)
            mapped = lmlab.ray.map_with_pool(ds, ray_workers.NodeRecordingEmbedWorker, args, 2, 1)
            assert lmlab.ray.write_parquet(mapped, tmp_path / "out") == 240
            node_ids = {n["NodeID"] for n in session.nodes()}
    finally:
        cluster.shutdown()
    table = lmlab.ray.read_parquet_folder(tmp_path / "out")
    assert set(table["node"].to_pylist()) == node_ids  # each node's actor embedded rows
    assert [str(i) for i in table["id"].to_pylist()] == ids
    got = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    assert np.abs(got - vectors).max() <= 1e-6
