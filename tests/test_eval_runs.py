"""`lmlab eval` on runs of `lmlab train`: scored as the trainer validates, so a run's own
valid.txt gives back the final validation loss of its metrics.jsonl."""

import json
import subprocess
import sys

import pytest

import lmlab
from lmlab.errors import LmlabError
from lmlab.training import TrainConfig, train

TEXT = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n" * 40
OPTIONS = {
    "gpt": dict(context=16, n_layer=1, n_head=2, n_embd=16, dropout=0.1),  # dropout: eval mode
    "lstm": dict(context=16, n_layer=2, n_embd=16),
    "mlp": dict(context=3, n_embd=8, n_hidden=16, block=24),  # windows of `block` tokens
}


def final_valid_loss(run) -> float:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    (final,) = [r for r in records if r.get("final")]
    return final["valid_loss"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    (root / "corpus.txt").write_text(TEXT)
    config = TrainConfig(steps=8, batch_size=4, warmup=2, eval_every=4, device="cpu")
    for kind, options in OPTIONS.items():
        train(kind, [root / "corpus.txt"], root / kind, model_options=options,
              valid_fraction=0.2, config=config, progress=False)  # fmt: skip
    return root


@pytest.mark.parametrize("kind", list(OPTIONS))
def test_valid_split_reproduces_the_final_validation_loss(runs, kind):
    run = runs / kind
    result = lmlab.evaluate_file(run, run / "valid.txt")
    assert result.loss == pytest.approx(final_valid_loss(run), rel=1e-6)
    text = (run / "valid.txt").read_text()
    n = len(lmlab.load_lm(run).tokenizer.encode(text))  # char tokens
    # characters: no sentences, words or OOV words to report
    assert (result.sentences, result.oov, result.words) == (None, None, None)
    if kind == "lstm":  # one stream: every token after the first
        assert (result.tokens, result.convention) == (n - 1, "stream")
    else:  # whole windows of the training length only
        length = OPTIONS[kind].get("block", OPTIONS[kind]["context"])
        assert result.tokens == (n - 1) // length * length
        assert result.convention == f"windows of {length}"


def test_cli_eval_split_valid_on_a_run(runs):
    run = runs / "gpt"
    out = subprocess.run(
        [sys.executable, "-m", "lmlab", "eval", str(run), "--split", "valid", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["loss"] == pytest.approx(final_valid_loss(run), rel=1e-6)


def test_cli_eval_on_a_character_run_reports_no_sentences_or_oov(runs):
    run = runs / "gpt"
    out = subprocess.run(
        [sys.executable, "-m", "lmlab", "eval", str(run), "--split", "valid"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "perplexity:" in out.stdout and "tokens scored:" in out.stdout
    assert "sentences" not in out.stdout and "OOV" not in out.stdout


def test_a_word_level_run_reports_sentences_and_the_words_read_as_unk(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat\n" * 30)
    config = TrainConfig(steps=2, batch_size=2, warmup=1, eval_every=2, device="cpu")
    train("gpt", [corpus], tmp_path / "run", tokenizer="word", config=config, progress=False,
          model_options=dict(context=8, n_layer=1, n_head=1, n_embd=8))  # fmt: skip
    test = tmp_path / "test.txt"
    test.write_text("the cat sat on the rug\n<unk> dog ran away\n\n")
    result = lmlab.evaluate_file(tmp_path / "run", test)
    # rug, ran and away are outside the vocabulary; the literal <unk> is not counted
    assert (result.sentences, result.words, result.oov) == (2, 10, 3)
    assert result.oov_rate == pytest.approx(0.3)


def test_a_text_shorter_than_one_window_is_a_clear_error(runs, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("the fox")
    with pytest.raises(LmlabError, match="fewer than one window of 17"):
        lmlab.evaluate_file(runs / "gpt", short)
