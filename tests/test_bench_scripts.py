"""The benchmark scripts' own logic (not their figures): what cpu_table.py accepts and writes,
and how benchmarks/llama_server.py builds llama.cpp's server."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import cpu_table  # noqa: E402
import llama_server  # noqa: E402


def test_cpu_table_refuses_an_unknown_section():
    with pytest.raises(SystemExit) as exit_:
        cpu_table.parse(["--only", "decode,speed"])
    assert exit_.value.code == 2


def test_cpu_table_keeps_the_sections_asked_for():
    assert cpu_table.parse(["--only", " embed, decode ,"]).only == ["embed", "decode"]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the no-AMX flags are x86_64 only")
def test_llama_server_is_built_with_the_makefiles_no_amx_flags(tmp_path):
    args = llama_server.cmake_configure_args(tmp_path / "src", tmp_path / "build")
    flags = [a for a in args if a.startswith("-DCMAKE_C_FLAGS=")]
    assert flags and "-mno-amx-tile" in flags[0]  # the Makefile's list, not a copy of it
    assert "-DGGML_NATIVE=ON" in args and "-DLLAMA_USE_PREBUILT_UI=OFF" in args


def test_llama_server_absent_and_not_to_be_built_is_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_HOME", str(tmp_path))
    path, note = llama_server.binary(allow_build=False)
    assert path is None and note.startswith("llama-server skipped")


@pytest.mark.slow
def test_cpu_table_writes_one_markdown_table_naming_the_cpu(tmp_path):
    out = tmp_path / "table.md"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cpu_table.py"), "--only", "ngram", "--quick",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    from lmlab.measured import cpu_model_and_flags

    assert text.startswith(f"### {cpu_model_and_flags()[0]} (")
    rows = [line for line in text.splitlines() if line.startswith("| KN5")]
    assert len(rows) == 2 and rows[0].split("|")[4].strip().endswith("x**")
    assert text in done.stdout  # printed as written
