"""Ctrl-C and --resume: wherever the interrupt lands, the resumed run is the uninterrupted one
(weights, checkpoint, metrics, early-stopping state); and what the command line says."""

import json
import os
import signal

import pytest
import torch
from test_train import TEXT, TINY, quick, weights

from lmlab.cli import main
from lmlab.training import Loop, TrainingInterrupted, train
from lmlab.training.objectives import causal

SHAPES = {"gpt": {**TINY, "dropout": 0.1}, "lstm": {"n_embd": 16, "context": 8, "dropout": 0.1}}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def ctrl_c() -> None:
    """A real SIGINT, as the terminal sends it (Python raises KeyboardInterrupt soon after)."""
    os.kill(os.getpid(), signal.SIGINT)


def on_call(n: int, original, before: bool = True):
    """`original`, sending Ctrl-C at its n-th call: before it runs, or just after."""
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if before and calls[0] == n:
            ctrl_c()
        out = original(*args, **kwargs)
        if not before and calls[0] == n:
            ctrl_c()
        return out

    return wrapper


def metrics(run) -> list[dict]:
    """metrics.jsonl without the speeds (which differ from run to run)."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in lines]


def state(run) -> dict:
    return torch.load(run / "checkpoint" / "state.pt", weights_only=False)


def assert_same_run(a, b) -> None:
    """The same weights (last and best), metrics and early-stopping state."""
    for folder in ("checkpoint", "."):
        wa, wb = weights(a / folder), weights(b / folder)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), folder
    assert metrics(a) == metrics(b)
    sa, sb = state(a), state(b)
    assert (sa["step"], sa["best"], sa["bad_evals"]) == (sb["step"], sb["best"], sb["bad_evals"])


def interrupted_then_resumed(kind, corpus, tmp_path, monkeypatch, patch, config, check=None):
    """Train `kind` whole, and again with `patch(m)` applied until a Ctrl-C; `check` the run
    the interrupt left, --resume it, and compare with the whole run."""
    options = dict(model_options=SHAPES[kind], valid_fraction=0.2, config=config, progress=False)
    train(kind, [corpus], tmp_path / "whole", **options)
    with monkeypatch.context() as m:
        patch(m)
        with pytest.raises(TrainingInterrupted):
            train(kind, [corpus], tmp_path / "killed", **options)
    if check is not None:
        check(tmp_path / "killed")
    train(kind, [corpus], tmp_path / "killed", resume=True, **options)
    assert_same_run(tmp_path / "whole", tmp_path / "killed")


def ctrl_c_at_clipping(n: int):
    """A patch: Ctrl-C at the n-th gradient clipping, after step n's forward and backward and
    before its update."""
    return lambda m: m.setattr(
        torch.nn.utils, "get_total_norm", on_call(n, torch.nn.utils.get_total_norm)
    )


def stopped_at(step: int, **extra):
    def check(run):
        left = state(run)
        assert left["step"] == step
        assert all(left[k] == v for k, v in extra.items())

    return check


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_ctrl_c_inside_a_step_resumes_exactly(kind, corpus, tmp_path, monkeypatch):
    # step 8 is forgotten (data position, random state and the carried hidden state)
    interrupted_then_resumed(kind, corpus, tmp_path, monkeypatch, ctrl_c_at_clipping(8),
                             quick(steps=16, eval_every=5), stopped_at(7))  # fmt: skip


def test_ctrl_c_just_after_the_weight_update_counts_the_step(corpus, tmp_path, monkeypatch):
    update = torch.optim.AdamW.step

    def patch(m):
        m.setattr(torch.optim.AdamW, "step", on_call(8, update, before=False))

    # the weights of step 8 were kept: so is the step
    interrupted_then_resumed("lstm", corpus, tmp_path, monkeypatch, patch,
                             quick(steps=16, eval_every=5), stopped_at(8))  # fmt: skip


def test_ctrl_c_before_the_first_metrics_line_resumes(corpus, tmp_path, monkeypatch):
    def check(run):
        stopped_at(3)(run)
        assert not (run / "metrics.jsonl").exists()  # nothing logged yet

    interrupted_then_resumed("gpt", corpus, tmp_path, monkeypatch, ctrl_c_at_clipping(4),
                             quick(steps=12), check)  # fmt: skip


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_ctrl_c_during_a_validation_keeps_that_validation(kind, corpus, tmp_path, monkeypatch):
    # the third periodic validation (step 6), with early stopping counting bad evaluations
    config = quick(steps=12, eval_every=2, log_every=1, lr=0.05, patience=100)

    def periodic(m):
        m.setattr(causal, "evaluate_loss", on_call(3, causal.evaluate_loss))

    def check(run):
        stopped_at(6)(run)
        assert state(run)["pending"] is not None  # its bookkeeping is redone on --resume
        assert [r["step"] for r in metrics(run) if "valid_loss" in r] == [2, 4]

    interrupted_then_resumed(kind, corpus, tmp_path, monkeypatch, periodic, config, check)


def test_resume_after_early_stopping_does_not_train_on(corpus, tmp_path, monkeypatch):
    config = quick(steps=400, lr=0.3, eval_every=2, patience=2)
    options = dict(model_options=TINY, valid_fraction=0.1, config=config, progress=False)
    whole = train("gpt", [corpus], tmp_path / "whole", **options)
    assert whole.stopped_early

    def final(m):  # Ctrl-C during the final evaluation, after the early stop
        m.setattr(Loop, "finish", on_call(1, Loop.finish))

    with monkeypatch.context() as m:
        final(m)
        with pytest.raises(TrainingInterrupted):
            train("gpt", [corpus], tmp_path / "killed", **options)
    again = train("gpt", [corpus], tmp_path / "killed", resume=True, **options)
    assert again.stopped_early and again.steps == whole.steps
    assert_same_run(tmp_path / "whole", tmp_path / "killed")


def test_resume_of_a_finished_run_changes_nothing(corpus, tmp_path):
    options = dict(model_options=TINY, valid_fraction=0.2, config=quick(steps=10), progress=False)
    first = train("gpt", [corpus], tmp_path / "r", **options)
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    again = train("gpt", [corpus], tmp_path / "r", resume=True, **options)
    assert again.already_complete and not first.already_complete
    assert (again.steps, again.valid_loss) == (first.steps, first.valid_loss)
    assert again.train_loss == first.train_loss
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before  # no second final line


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_says_where_it_stopped_what_it_ran_and_when_it_is_done(
    corpus, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    command = ["train", "gpt", str(corpus), "--out", str(run), "--layers", "1", "--heads", "2",
               "--dim", "16", "--context", "16", "--steps", "12", "--batch-size", "4",
               "--device", "cpu", "--no-progress"]  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(torch.nn.utils, "get_total_norm", on_call(4, torch.nn.utils.get_total_norm))
        code, out, err = run_cli(capsys, *command)
    assert code == 130 and out == ""
    assert err.splitlines() == [
        f"interrupted at step 3: checkpoint saved in {run}; "
        "run the same command with --resume to continue"
    ]
    code, out, err = run_cli(capsys, *command, "--resume")
    assert code == 0, err
    assert out.startswith("gpt: 9 steps (resumed at step 3, now at 12) in ")
    before = (run / "metrics.jsonl").read_text()
    code, out, err = run_cli(capsys, *command, "--resume")
    assert code == 0, err
    assert out.startswith(f"gpt: the run in {run} is already complete (12 steps)")
    assert "nan" not in out and (run / "metrics.jsonl").read_text() == before


def test_a_checkpoint_this_version_cannot_read_is_a_one_line_error(corpus, tmp_path):
    from lmlab.errors import LmlabError

    options = dict(model_options=TINY, config=quick(steps=2), progress=False)
    train("gpt", [corpus], tmp_path / "r", **options)
    path = tmp_path / "r" / "checkpoint" / "state.pt"
    old = state(tmp_path / "r")
    torch.save({k: v for k, v in old.items() if k != "ranks"}, path)
    with pytest.raises(LmlabError, match=r"another version of lmlab .*lacking ranks"):
        train("gpt", [corpus], tmp_path / "r", resume=True, **options)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(LmlabError, match="cannot read the checkpoint in"):
        train("gpt", [corpus], tmp_path / "r", resume=True, **options)
