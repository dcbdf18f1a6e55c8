"""Commands import only what they use (issue 28), and lmlab leaves the process as the user set
it (issue 29): checked in fresh interpreters, by what is in sys.modules and os.environ, never
by timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lmlab._offline import _SWITCHES
from lmlab.embed.load import load_encoder
from lmlab.models import DEFAULT_ENCODER

HEAVY = ("torch", "transformers", "sklearn", "matplotlib")

# Run a command in-process, then report the heavy modules it loaded.
COMMAND = """
import json, sys
from lmlab.cli import main
try:
    main({argv!r})
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "loaded": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def python(code: str, env: dict[str, str] | None = None) -> dict:
    """Run `code` in a fresh interpreter; its last stdout line, parsed as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def onnx_export():
    """The bundled encoder's ONNX export in this session's cache (what a second run finds)."""
    encoder = load_encoder(DEFAULT_ENCODER)
    assert encoder.backend == "onnx"
    return encoder


@pytest.mark.parametrize(
    "argv",
    [["similarity", "bank", "river"], ["similarity", "bank", "river", "--json"], ["--help"]],
)
def test_commands_import_no_torch_transformers_sklearn_or_matplotlib(onnx_export, argv):
    out = python(COMMAND.format(argv=argv, heavy=HEAVY))
    assert out["code"] == 0
    assert out["loaded"] == []


def test_the_onnx_encoder_gives_the_torch_vectors_without_torch(onnx_export):
    """The ONNX path (no torch in the process) against the torch backend, on mixed lengths."""
    texts = ["bank", "The man bites the dog.", "", "word " * 300]
    code = f"""
import json, sys
import lmlab
enc = lmlab.load_encoder({DEFAULT_ENCODER!r})
vectors = enc.encode({texts!r}, batch_size=2)
print(json.dumps({{"backend": enc.backend, "torch": "torch" in sys.modules,
                  "vectors": vectors.tolist()}}))
"""
    out = python(code)
    assert out["backend"] == "onnx" and not out["torch"]
    torch_vectors = load_encoder(DEFAULT_ENCODER, backend="torch").encode(texts, batch_size=2)
    assert abs(torch_vectors - out["vectors"]).max() < 1e-5


def test_import_and_encoders_leave_the_users_environment_alone(onnx_export):
    """`import lmlab` and loading an encoder (ONNX and torch) change no environment variable,
    and leave transformers' logging and Hugging Face's offline mode as the user had them."""
    code = f"""
import json, os
before = dict(os.environ)
import lmlab
lmlab.load_encoder({DEFAULT_ENCODER!r}).encode("bank")
lmlab.load_encoder({DEFAULT_ENCODER!r}, backend="torch").encode("bank")
import huggingface_hub.constants
from transformers.utils import logging
changed = sorted(k for k in {{*before, *os.environ}} if before.get(k) != os.environ.get(k))
print(json.dumps({{"changed": changed, "verbosity": logging.get_verbosity(),
                  "bars": logging.is_progress_bar_enabled(),
                  "offline": huggingface_hub.constants.HF_HUB_OFFLINE}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in _SWITCHES}
    env["TOKENIZERS_PARALLELISM"] = "true"  # a user's own setting, which lmlab used to overwrite
    out = python(code, env)
    assert out == {"changed": [], "verbosity": 30, "bars": True, "offline": False}  # 30: WARNING
