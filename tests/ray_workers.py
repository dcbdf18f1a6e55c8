"""Actor classes for the Ray tests: lmlab's own workers, plus what the tests need to see.

The tests register this module to be pickled by value, so Ray's worker processes (which do
not have tests/ on their path) receive the classes themselves.
"""

import os
from pathlib import Path

from lmlab.ray.workers import EmbedWorker


class NodeRecordingEmbedWorker(EmbedWorker):
    """EmbedWorker that adds a `node` column: the Ray node of the actor that did each row."""

    def __call__(self, table):
        import pyarrow as pa
        import ray

        out = super().__call__(table)
        node = ray.get_runtime_context().get_node_id()
        return out.append_column("node", pa.array([node] * len(out), pa.string()))


class DyingOnceEmbedWorker(EmbedWorker):
    """EmbedWorker whose process dies (os._exit: no cleanup, as a killed worker) at its second
    batch, once per `marker` file: Ray must restart it and run that batch again."""

    def __init__(self, marker: str, *args):
        super().__init__(*args)
        self.marker = Path(marker)
        self.calls = 0

    def __call__(self, table):
        self.calls += 1
        if self.calls == 2 and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().__call__(table)
