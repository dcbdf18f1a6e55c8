"""What `lmlab serve` asks of each backend (sequences and threads for llama.cpp, dtype for
torch), and how it refuses a port it cannot listen on."""

import os
import socket
import subprocess
import sys

from lmlab.models import DEFAULT_LM
from lmlab.serve.app import ServerConfig, _load_options


def test_llama_gets_its_sequences_and_threads():
    cores = os.cpu_count() or 1
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", parallel=12))
    # one sequence alone decodes on all cores but one; batches of them on every core
    assert options == {"max_batch_size": 12, "n_threads": max(1, cores - 1),
                       "n_threads_batch": cores}  # fmt: skip
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", threads=3))
    assert (options["n_threads"], options["n_threads_batch"]) == (3, 3)  # as llama.cpp's -t
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", threads=3, threads_batch=5))
    assert (options["n_threads"], options["n_threads_batch"]) == (3, 5)


def test_torch_gets_the_dtype_asked_for():
    config = ServerConfig(backend="torch", dtype="bfloat16")
    assert _load_options(DEFAULT_LM, config) == {"dtype": "bfloat16"}
    assert _load_options(DEFAULT_LM, ServerConfig(backend="torch")) == {}


def test_a_port_in_use_is_an_error_before_the_models_load():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "lmlab", "serve", "--port", str(port), "--embedding-model", ""],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2
    assert "serving" not in run.stdout
    assert run.stderr.startswith("error: ") and str(port) in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
