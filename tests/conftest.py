"""Shared fixtures: the bundled chat model on both backends, loaded once per session.

LMLAB_HOME points at a session folder, so the GGUF conversion the torch backend needs is made
fresh (and tested) in every run, never read from the developer's own cache; the folder (~0.5 GB)
is removed when the session ends, unless LMLAB_TEST_HOME named it. LMLAB_MEASURE=0: choices
that lmlab measures per machine take their fixed defaults, so results do not depend on the CPU
(tests/test_measured.py turns measuring on where it tests it).
"""

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for mock_lm

os.environ["LMLAB_HOME"] = os.environ.get("LMLAB_TEST_HOME") or tempfile.mkdtemp(
    prefix="lmlab-test-home-"
)
os.environ.setdefault("LMLAB_MEASURE", "0")

from lmlab.models import BUNDLED, DEFAULT_LM, bundled_path, load_lm


def pytest_unconfigure(config):
    if not os.environ.get("LMLAB_TEST_HOME"):
        shutil.rmtree(os.environ["LMLAB_HOME"], ignore_errors=True)


@pytest.fixture(autouse=True)
def ctrl_c_reaches_python():
    """Each test starts with Ctrl-C delivered as KeyboardInterrupt, as in a fresh process: a
    native library an earlier test loaded in this process (the suite runs ~1,000 tests in one
    process) must not decide whether the Ctrl-C tests' SIGINT arrives."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    path = bundled_path(BUNDLED[DEFAULT_LM])
    assert path is not None, "the bundled model is not installed: make test installs it"
    return path


@pytest.fixture(scope="session")
def llama_lm(gguf_path):
    return load_lm(DEFAULT_LM, backend="llama")  # what users run: the Q8_0 copy


@pytest.fixture
def fresh_llama_lm(gguf_path):
    """The llama backend with an empty KV cache of its own: where earlier sequences left their
    cells changes llama.cpp's rounding, enough to flip a near-tie between two tokens."""
    return load_lm(DEFAULT_LM, backend="llama")


@pytest.fixture(scope="session")
def torch_lm(gguf_path):
    return load_lm(gguf_path, backend="torch")


@pytest.fixture(scope="session")
def server():
    """`lmlab serve` with the bundled chat and embedding models, started once per session."""
    from server_process import Server

    s = Server()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def client(server):
    """The official `openai` client pointed at the live server."""
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
