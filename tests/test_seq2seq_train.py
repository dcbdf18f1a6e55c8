"""`lmlab train seq2seq`: pairs from a table, a joint tokenizer in the run, the one loop; and
one-line errors for bad tables."""

import json
from pathlib import Path

import pytest

from lmlab.cli import main
from lmlab.seq2seq.data import read_pairs

EN_ES = Path("/work/shared/data/en-es")
needs_data = pytest.mark.skipif(not EN_ES.is_dir(), reason="no en-es data")


def cli(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(["train", "seq2seq", *map(str, args)])
    return e.value.code, capsys.readouterr()


def head(source: Path, out: Path, lines: int) -> Path:
    with open(source, encoding="utf-8") as f:
        out.write_text("".join(next(f) for _ in range(lines + 1)), encoding="utf-8")
    return out


@pytest.mark.slow
@needs_data
def test_training_on_en_es_pairs_writes_a_run(tmp_path, capsys):
    train = head(EN_ES / "train.tsv", tmp_path / "train.tsv", 300)
    valid = head(EN_ES / "valid.tsv", tmp_path / "valid.tsv", 40)
    run = tmp_path / "run"
    code, out = cli(capsys, train, "--valid", valid, "--source-col", "en", "--target-col", "es",
                    "--arch", "transformer", "--preset", "tiny", "--context", "128",
                    "--vocab-size", "600", "--steps", "20", "--warmup", "2", "--lr", "3e-3",
                    "--batch-size", "16", "--eval-every", "5", "--dtype", "float32",
                    "--out", run, "--no-progress")  # fmt: skip
    assert code == 0, out.err
    assert "seq2seq: 20 steps" in out.out and "valid loss" in out.out
    for name in ("tokenizer.json", "model.safetensors", "metrics.jsonl", "loss.png"):
        assert (run / name).is_file(), name
    info = json.loads((run / "lmlab.json").read_text())
    assert info["kind"] == "seq2seq" and info["train"]["arch"] == "transformer"
    assert (info["train"]["source_col"], info["train"]["target_col"]) == ("en", "es")
    assert info["model"]["vocab_size"] == 600  # one joint tokenizer for both sides
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid_losses = [x["valid_loss"] for x in lines if "valid_loss" in x and not x.get("final")]
    assert len(valid_losses) == 4
    assert valid_losses[-1] < valid_losses[0] - 0.5  # it learned something of the targets
    code, again = cli(capsys, train, "--valid", valid, "--source-col", "en", "--target-col",
                      "es", "--preset", "tiny", "--context", "128", "--vocab-size", "600",
                      "--steps", "20", "--warmup", "2", "--lr", "3e-3", "--batch-size", "16",
                      "--eval-every", "5", "--dtype", "float32", "--out", run, "--resume",
                      "--no-progress")  # fmt: skip
    assert code == 0 and "already complete (20 steps)" in again.out


@pytest.mark.slow
@needs_data
def test_the_rnn_with_attention_trains_from_the_cli_and_translates(tmp_path, capsys):
    train = head(EN_ES / "train.tsv", tmp_path / "train.tsv", 200)
    run = tmp_path / "run"
    code, out = cli(capsys, train, "--valid", train, "--source-col", "en", "--target-col", "es",
                    "--arch", "rnn", "--attention", "luong", "--cell", "lstm", "--preset",
                    "tiny", "--vocab-size", "500", "--steps", "20", "--warmup", "2", "--lr",
                    "1e-2", "--batch-size", "16", "--eval-every", "10", "--dtype", "float32",
                    "--out", run, "--no-progress")  # fmt: skip
    assert code == 0, out.err
    info = json.loads((run / "lmlab.json").read_text())
    assert info["train"]["arch"] == "rnn"
    assert (info["model"]["attention"], info["model"]["cell"]) == ("luong", "lstm")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid_losses = [x["valid_loss"] for x in lines if "valid_loss" in x and not x.get("final")]
    assert valid_losses[-1] < valid_losses[0]  # it learned something of the targets
    with pytest.raises(SystemExit) as e:
        main(["translate", str(run), "A man is playing a guitar.", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and result[0]["source"] == "A man is playing a guitar."


@needs_data
def test_a_time_budget_keeps_when_the_warm_up_ended_in_the_checkpoint(tmp_path, capsys):
    """With --minutes the decay runs over the time left after the warm-up: when that was is
    in the checkpoint, so that --resume goes on with the same schedule."""
    import torch

    train = head(EN_ES / "train.tsv", tmp_path / "train.tsv", 100)
    run = tmp_path / "run"
    code, out = cli(capsys, train, "--source-col", "en", "--target-col", "es", "--preset",
                    "tiny", "--context", "64", "--vocab-size", "300", "--warmup", "3",
                    "--batch-size", "8", "--minutes", "0.04", "--dtype", "float32",
                    "--out", run, "--no-progress")  # fmt: skip
    assert code == 0, out.err
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] > 3 and 0 < state["warmed_at"] < state["seconds"]


@needs_data
def test_a_tsv_sentence_that_opens_with_a_quote_stays_in_its_column():
    pairs = read_pairs(EN_ES / "train.tsv", "en", "es")
    assert len(pairs.sources) == 18170  # SOURCE.md's count
    quoted = [i for i, s in enumerate(pairs.sources) if s.startswith('"')]
    assert len(quoted) == 273
    assert all(pairs.targets[i] and "\t" not in pairs.sources[i] for i in quoted)


def test_a_missing_column_lists_the_columns_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "pairs.tsv"
    data.write_text("english\tspanish\nhello\thola\n")
    code, out = cli(capsys, data, "--source-col", "en", "--target-col", "es", "--out",
                    tmp_path / "run")  # fmt: skip
    assert code == 2
    assert out.err.strip() == ("error: pairs.tsv has no column 'en' (columns: english, spanish)")
    assert not (tmp_path / "run").exists()


def test_empty_sources_or_targets_are_counted(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    rows = [{"en": "a cat", "es": "un gato"}, {"en": "a dog", "es": ""},
            {"en": " ", "es": "hola"}, {"en": "yes", "es": None}]  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out = cli(capsys, data, "--source-col", "en", "--target-col", "es", "--out",
                    tmp_path / "run")  # fmt: skip
    assert code == 2 and len(out.err.strip().splitlines()) == 1
    assert "1 rows have no source text in column 'en' (rows 3)" in out.err
    data.write_text("".join(json.dumps(r) + "\n" for r in rows if r["en"].strip()))
    code, out = cli(capsys, data, "--source-col", "en", "--target-col", "es", "--out",
                    tmp_path / "run")  # fmt: skip
    assert code == 2 and "2 rows have no target text in column 'es' (rows 2, 3)" in out.err
    assert not (tmp_path / "run").exists()


def test_columns_default_to_a_two_column_tables_and_bad_options_are_errors(tmp_path, capsys):
    data = tmp_path / "pairs.csv"
    data.write_text("src,tgt\nhello,hola\n")
    pairs = read_pairs(data)
    assert (pairs.source_col, pairs.target_col, pairs.targets) == ("src", "tgt", ["hola"])
    data.write_text("id,src,tgt\n1,hello,hola\n")
    code, out = cli(capsys, data, "--out", tmp_path / "run")
    assert code == 2 and "--source-col and --target-col (columns: id, src, tgt)" in out.err
    code, out = cli(capsys, data, "--source-col", "src", "--target-col", "tgt", "--arch", "lstm",
                    "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and "--arch must be one of transformer, rnn, not 'lstm'" in out.err
    code, out = cli(capsys, data, "--source-col", "src", "--target-col", "tgt", "--arch", "rnn",
                    "--attention", "additive", "--out", tmp_path / "run")  # fmt: skip
    assert code == 2
    assert "--attention must be one of none, bahdanau, luong, luong-dot, not 'additive'" in out.err
    code, out = cli(capsys, data, "--source-col", "src", "--target-col", "tgt", "--attention",
                    "luong", "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and "a transformer model has no option attention" in out.err
    code, out = cli(capsys, data, "--source-col", "src", "--target-col", "tgt", "--tokenizer",
                    "wordpiece", "--out", tmp_path / "run")  # fmt: skip
    assert code == 2 and "no end-of-text token" in out.err
    assert not (tmp_path / "run").exists()
