"""Choices measured once per machine: kept in $LMLAB_HOME, reused, redone for another CPU or
library version; the chat model's weight copy chosen per workload."""

import json

import pytest

from lmlab import measured as m
from lmlab.models import DEFAULT_LM, llama_file, resolve


@pytest.fixture
def measuring(tmp_path, monkeypatch):
    """Measuring on (conftest turns it off), in a cache of the test's own, on a machine that
    looks quiet (the suite's own load would otherwise keep results from being kept)."""
    monkeypatch.setenv("LMLAB_HOME", str(tmp_path))
    monkeypatch.setenv(m.MEASURE_ENV, "1")
    monkeypatch.setattr(m, "_load_average", lambda: 0.25)
    return tmp_path


def counting():
    calls = []

    def measure():
        calls.append(1)
        return {"choice": f"run {len(calls)}"}

    return measure, calls


def test_a_choice_is_measured_once_and_kept(measuring):
    measure, calls = counting()
    first = m.measured("thing", measure, {"choice": "default"})
    assert first == {"choice": "run 1", "measured": True, "load_average": 0.25}
    (file,) = (measuring / "measured").iterdir()
    kept = json.loads(file.read_text())
    assert kept["machine"] == m.machine() and kept["choices"] == {"thing": first}
    assert m.measured("thing", measure, {"choice": "default"}) == first
    assert len(calls) == 1
    other, _ = counting()
    m.measured("another", other, {})  # a second choice joins the first in the same file
    assert set(json.loads(file.read_text())["choices"]) == {"thing", "another"}
    assert set(m.choices()) == {"thing", "another"}


def test_a_choice_measured_on_a_busy_machine_is_measured_again_when_quiet(measuring, monkeypatch):
    busy_load = 1.5 * m.BUSY * m.machine()["cores"]
    monkeypatch.setattr(m, "_load_average", lambda: busy_load)
    measure, calls = counting()
    first = m.measured("thing", measure, {"choice": "default"})
    assert first == {"choice": "run 1", "measured": True, "load_average": busy_load, "busy": True}
    assert m.measured("thing", measure, {"choice": "default"}) == first  # still busy: kept
    assert len(calls) == 1 and m.choices() == {"thing": first}
    monkeypatch.setattr(m, "_load_average", lambda: 0.25)  # a later process on a quiet machine
    again = m.measured("thing", measure, {"choice": "default"})
    assert again == {"choice": "run 2", "measured": True, "load_average": 0.25}
    assert m.choices() == {"thing": again}
    assert m.measured("thing", measure, {"choice": "default"}) == again and len(calls) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"cpu": "Some Other CPU"},
        {"flags": ["sse2"]},
        {"cores": 64},
        {"versions": {"torch": "0.0.1", "onnxruntime": None, "llama-cpp-python": None}},
    ],
)
def test_another_cpu_or_version_measures_again(measuring, monkeypatch, change):
    measure, calls = counting()
    m.measured("thing", measure, {})
    real = m.machine()
    monkeypatch.setattr(m, "machine", lambda: {**real, **change})
    assert m.measured("thing", measure, {})["choice"] == "run 2"
    assert len(calls) == 2 and m.choices()["thing"]["choice"] == "run 2"
    monkeypatch.setattr(m, "machine", lambda: real)  # back on the first machine: its own file
    assert m.measured("thing", measure, {})["choice"] == "run 1" and len(calls) == 2


def test_a_file_of_another_machine_under_this_name_is_ignored(measuring):
    measure, _ = counting()
    m.measured("thing", measure, {})
    (file,) = (measuring / "measured").iterdir()
    data = json.loads(file.read_text())
    file.write_text(json.dumps({**data, "machine": {**data["machine"], "cpu": "copied"}}))
    assert m.measured("thing", measure, {})["choice"] == "run 2"
    file.write_text("{ damaged")
    assert m.measured("thing", measure, {})["choice"] == "run 3"


def test_measure_0_takes_the_default_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_HOME", str(tmp_path))
    monkeypatch.setenv(m.MEASURE_ENV, "0")
    measure, calls = counting()
    assert m.measured("thing", measure, {"choice": "default"}) == {
        "choice": "default",
        "measured": False,
    }
    assert calls == [] and not (tmp_path / "measured").exists()


def test_the_machine_key_names_the_cpu_and_the_libraries():
    key = m.machine()
    assert key["cpu"] and key["cores"] >= 1
    assert set(key["versions"]) == set(m.LIBRARIES) and key["versions"]["torch"]


def test_the_chat_model_runs_the_file_each_workload_was_measured_fastest_with(
    gguf_path, measuring, monkeypatch
):
    from lmlab.lm import gguf_requantize

    ref = resolve(DEFAULT_LM)
    copy = gguf_requantize.copy_path(gguf_path, "Q8_0")
    chosen = {"single": "file", "batch": "Q8_0", "tokens_per_s": {}}
    monkeypatch.setattr(gguf_requantize, "measure_copies", lambda files, prefer: chosen)
    assert llama_file(ref, "single") == gguf_path
    assert llama_file(ref, "batch") == copy
    assert llama_file(resolve(str(gguf_path)), "batch") == gguf_path  # a path runs as it is
    monkeypatch.setenv(m.MEASURE_ENV, "0")
    assert llama_file(ref, "single") == copy  # unmeasured: the copy, as before


@pytest.mark.slow  # two llama.cpp models decoding: ~5 s idle, minutes on a loaded 2-core machine
def test_measuring_the_copies_gives_a_choice_and_its_figures(gguf_path):
    from lmlab.lm.gguf_requantize import measure_copies, requantized

    files = {"file": gguf_path, "Q8_0": requantized(gguf_path, "Q8_0")}
    result = measure_copies(files, prefer="Q8_0", steps=4, rows=2)
    assert result["single"] in files and result["batch"] in files
    for use in ("single", "batch"):
        speeds = result["tokens_per_s"][use]
        assert set(speeds) == set(files) and min(speeds.values()) > 0
        faster = max(speeds, key=speeds.get)
        assert result[use] == faster or speeds[faster] <= m.MARGIN * speeds["Q8_0"]


def test_another_path_must_be_clearly_faster_than_the_default():
    assert m.fastest({"onnx": 100.0, "torch": 104.0}, prefer="onnx") == "onnx"  # within 5%
    assert m.fastest({"onnx": 100.0, "torch": 106.0}, prefer="onnx") == "torch"
    assert m.fastest({"onnx": 100.0, "torch": 90.0}, prefer="onnx") == "onnx"
    assert m.fastest({"int8": 90.0, "bfloat16": 120.0}, prefer="default") == "bfloat16"


def test_models_json_shows_the_measured_choices(gguf_path, measuring, monkeypatch, capsys):
    from lmlab.cli import main
    from lmlab.lm import gguf_requantize

    chosen = {"single": "file", "batch": "Q8_0", "tokens_per_s": {"single": {"file": 9.0}}}
    monkeypatch.setattr(gguf_requantize, "measure_copies", lambda files, prefer: chosen)
    llama_file(resolve(DEFAULT_LM))
    with pytest.raises(SystemExit) as e:
        main(["models", "--json"])
    assert e.value.code == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    kept = rows[DEFAULT_LM]["choices"]["llama weights"]
    assert kept == {**chosen, "measured": True, "load_average": kept["load_average"]}
    assert rows["all-minilm-l6-v2"]["choices"] == {"encoder": None, "fast encoder": None}
    with pytest.raises(SystemExit):
        main(["models"])  # the table says the same in words
    lines = {line.split("\t")[0]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    assert lines["name"][3] == "runs as (measured on this CPU)"
    assert lines[DEFAULT_LM][3] == "one sequence: file, a batch: Q8_0 weights"
    assert lines["all-minilm-l6-v2"][3] == "not measured yet"


def test_the_server_start_up_line_names_what_runs(gguf_path, monkeypatch):
    from types import SimpleNamespace

    from lmlab.cli.serve_commands import _how_models_run

    served = SimpleNamespace(
        lms={"chat": SimpleNamespace(path=gguf_path), "tiny": object()},
        encoders={"enc": SimpleNamespace(backend="torch", dtype="bfloat16")},
    )
    monkeypatch.setenv(m.MEASURE_ENV, "1")
    line = _how_models_run(served)
    assert f"chat from {gguf_path.name}" in line and "enc on torch bfloat16" in line
    assert "measured on this CPU" in line and "tiny" not in line
    monkeypatch.setenv(m.MEASURE_ENV, "0")
    assert "fixed defaults" in _how_models_run(served)
