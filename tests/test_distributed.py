"""DistributedDataParallel: two CPU processes (gloo) against one with their combined batch."""

import json
import os
import subprocess
import sys

import pytest

TEXT = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n" * 40
MODEL = ["--layers", "1", "--heads", "2", "--dim", "16", "--context", "16"]
TRAINING = ["--steps", "40", "--lr", "1e-2", "--eval-every", "10", "--valid-fraction", "0.2",
            "--device", "cpu", "--no-progress", "--json"]  # fmt: skip


def records(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one_with_the_combined_batch(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "lmlab",
         "train", "gpt", str(corpus), "--out", str(tmp_path / "two"), "--batch-size", "4",
         *MODEL, *TRAINING],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "lmlab", "train", "gpt", str(corpus), "--out", str(tmp_path / "one"),
         "--batch-size", "8", *MODEL, *TRAINING],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert json.loads((tmp_path / "two" / "lmlab.json").read_text())["train"]["processes"] == 2
    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b]  # process 0 alone wrote the log
    train_a = [r["loss"] for r in a if "loss" in r]
    train_b = [r["loss"] for r in b if "loss" in r]
    assert train_a[0] - train_a[-1] > 0.5  # the curve falls far enough to compare
    assert all(abs(x - y) < 0.2 for x, y in zip(train_a, train_b, strict=True))
    valid_a = [r["valid_loss"] for r in a if "valid_loss" in r]
    valid_b = [r["valid_loss"] for r in b if "valid_loss" in r]
    assert all(abs(x - y) < 0.15 for x, y in zip(valid_a, valid_b, strict=True))
