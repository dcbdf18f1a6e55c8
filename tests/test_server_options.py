"""What `lmlab serve` asks of each backend: sequences and threads (llama.cpp), dtype (torch)."""

import os

from lmlab.models import DEFAULT_LM
from lmlab.serve.app import ServerConfig, _load_options


def test_llama_gets_its_sequences_and_all_cores():
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", parallel=12))
    assert options == {"max_batch_size": 12, "n_threads": os.cpu_count() or 1}
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", threads=3))
    assert options["n_threads"] == 3


def test_torch_gets_the_dtype_asked_for():
    config = ServerConfig(backend="torch", dtype="bfloat16")
    assert _load_options(DEFAULT_LM, config) == {"dtype": "bfloat16"}
    assert _load_options(DEFAULT_LM, ServerConfig(backend="torch")) == {}
