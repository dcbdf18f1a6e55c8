"""What `lmlab serve` asks of each backend (sequences and threads for llama.cpp, dtype for
torch), and how it refuses a port it cannot listen on."""

import os
import socket
import subprocess
import sys
import threading

import pytest
from mock_lm import ByteTokenizer

from lmlab.models import DEFAULT_LM
from lmlab.sampling_defaults import LLAMA_CPP
from lmlab.serve.app import ServerConfig, _load_options, pick_decode_threads


def test_llama_gets_its_sequences_and_threads():
    cores = os.cpu_count() or 1
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", parallel=12))
    # one sequence alone decodes on all cores but one; batches of them on every core; the
    # weights are those measured fastest for batches
    assert options == {"max_batch_size": 12, "n_threads": max(1, cores - 1),
                       "n_threads_batch": cores, "workload": "batch"}  # fmt: skip
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", threads=3))
    assert (options["n_threads"], options["n_threads_batch"]) == (3, 3)  # as llama.cpp's -t
    options = _load_options(DEFAULT_LM, ServerConfig(backend="llama", threads=3, threads_batch=5))
    assert (options["n_threads"], options["n_threads_batch"]) == (3, 5)


class _ClockedLM:
    """A stand-in llama model on a fake clock: one decoding step of one sequence takes
    `step[threads]` seconds; records the threads it was last given and its live states."""

    sampling_defaults = LLAMA_CPP  # the LanguageModel attribute the server reads

    def __init__(self, clock: list[float], step: dict[int, float]) -> None:
        self.name, self.tokenizer, self.clock, self.step = "clocked", ByteTokenizer(), clock, step
        self.threads, self.live = None, 0

    def set_threads(self, n: int, n_batch: int) -> None:
        self.threads = (n, n_batch)

    def new_state(self, batch_size: int = 1):
        self.live += 1
        return object()

    def forward_each(self, states, token_ids):
        if len(token_ids[0]) == 1:  # prompts are not timed
            self.clock[0] += self.step[self.threads[0]]

    def release(self, state, keep: bool = True) -> None:
        self.live -= 1
        self.kept = keep


@pytest.mark.parametrize(
    "two_cores_speed, expected",
    [(1.6, 2), (1.05, 1)],  # measured: an Intel Xeon VM (53 vs 33 tokens/s), an AMD EPYC
)
def test_one_sequence_gets_every_core_only_where_it_decodes_clearly_faster(
    monkeypatch, two_cores_speed, expected
):
    import lmlab.serve.app as app

    clock = [0.0]
    monkeypatch.setattr(app.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(app.os, "cpu_count", lambda: 2)
    lm = _ClockedLM(clock, {1: 0.03, 2: 0.03 / two_cores_speed})
    assert pick_decode_threads(lm, threads_batch=2) == expected
    assert lm.threads == (expected, 2)
    assert lm.live == 0 and not lm.kept  # the probe's state released, its cells not kept


def test_the_server_measures_threads_on_the_engine_thread(monkeypatch):
    """llama.cpp's OpenMP threads belong to the thread that first computes: a probe on another
    thread leaves a second team behind, which slowed every later step (one client 43 instead of
    55 tokens/s on a 2-core Xeon VM), so the probe runs where the steps run."""
    import torch

    import lmlab.models
    import lmlab.serve.app as app

    computed_on = []

    class _Recorded(_ClockedLM):
        max_batch_size = 4

        def forward_each(self, states, token_ids):
            computed_on.append(threading.current_thread().name)
            super().forward_each(states, token_ids)

    clock = [0.0]
    monkeypatch.setattr(app.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(app.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(lmlab.models, "load_lm", lambda spec, **_: _Recorded(clock, {1: 3, 2: 1}))
    torch_threads = torch.get_num_threads()
    try:
        served = app.ServedModels(ServerConfig(chat_models=[DEFAULT_LM], backend="llama"))
    finally:
        torch.set_num_threads(torch_threads)
    assert computed_on and set(computed_on) == {"lmlab-engine"}
    assert served.lms["clocked"].threads == (2, 2)


def test_one_core_is_not_measured(monkeypatch):
    import lmlab.serve.app as app

    monkeypatch.setattr(app.os, "cpu_count", lambda: 1)
    lm = _ClockedLM([0.0], {})
    assert pick_decode_threads(lm, threads_batch=1) == 1 and lm.threads is None


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
