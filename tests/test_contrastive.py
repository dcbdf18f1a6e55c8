"""Contrastive sentence encoders: the losses, the files they read, SimCSE and supervised
tuning in the one loop, the runs as encoders everywhere, and `lmlab eval --task sts`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lmlab
from lmlab.cli import main
from lmlab.contrastive.data import read_pairs, read_sentences
from lmlab.contrastive.losses import alignment, cosent, info_nce, uniformity
from lmlab.errors import LmlabError
from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path
from lmlab.training import TrainConfig

BERT = Path(lmlab.__file__).parent / "resources" / "bert-small"  # the bundled fill-mask BERT
STSB_TEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "stsb" / "sts-test.csv"
no_encoder = bundled_path(BUNDLED[DEFAULT_ENCODER]) is None
# Scored pairs of this test: the first three alike (high), the rest unrelated (low).
PAIRS = [
    ("a man is playing a guitar", "a man plays the guitar", 5.0),
    ("the stock market fell sharply today", "shares dropped steeply on the market today", 4.6),
    ("a woman is slicing an onion", "a woman cuts an onion", 4.8),
    ("a dog runs in the park", "the government announced new taxes", 0.2),
    ("the children are singing", "oil prices rose in march", 0.0),
    ("a cat sleeps on the sofa", "the company reported a loss", 0.4),
    ("two men are fighting", "two men are fighting in a field", 4.0),
    ("a plane is taking off", "the bank raised interest rates", 0.1),
]


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def write_pairs(path: Path, rows=PAIRS) -> Path:
    path.write_text("text1,text2,score\n" + "".join(f"{a},{b},{s}\n" for a, b, s in rows))
    return path


# -- the losses, on hand-made vectors ---------------------------------------------------------


def test_info_nce_is_low_for_identical_pairs_and_high_for_mismatched_ones():
    x = torch.eye(8)  # 8 orthogonal unit vectors
    same = info_nce(x, x.clone())
    mismatched = info_nce(x, x.roll(1, dims=0))
    assert same.item() < 1e-6  # e^{-1/0.05} of every other: nothing to learn
    assert mismatched.item() > 19  # each anchor's positive is orthogonal, another identical


def test_info_nce_hard_negatives_raise_the_loss():
    x = torch.eye(4)
    positives = x + 0.5 * torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    easy = info_nce(x, positives)
    hard = info_nce(x, positives, negatives=x.clone())  # each anchor itself as a negative
    assert hard > easy


def test_cosent_depends_only_on_the_order_of_the_scores():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    scores = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    rescaled = torch.tensor([-7.0, 10.0, 11.0, 90.0, 91.0, 1000.0])  # same order, any scale
    reordered = scores.flip(0)
    assert torch.allclose(cosent(a, b, scores), cosent(a, b, rescaled))
    assert not torch.allclose(cosent(a, b, scores), cosent(a, b, reordered))


def test_cosent_is_small_when_the_cosines_follow_the_scores():
    a = torch.eye(3)
    b = torch.tensor([[1.0, 0, 0], [0, 1.0, 3**0.5], [1.0, 0, -1.0]])  # cosines 1, 0.5, -0.71
    right = cosent(a, b, torch.tensor([3.0, 2.0, 1.0]))
    wrong = cosent(a, b, torch.tensor([1.0, 2.0, 3.0]))
    assert right < 0.1 < wrong


def test_alignment_and_uniformity():
    x = torch.eye(4)
    assert alignment(x, x) == pytest.approx(0.0)
    assert alignment(x, -x) == pytest.approx(4.0)  # ||2 e_i||^2
    spread, clumped = uniformity(x), uniformity(x + 10)  # x + 10: all near one direction
    assert spread == pytest.approx(np.log(np.exp(-4.0)))  # distinct unit basis: |d|^2 = 2
    assert clumped > spread


# -- reading ------------------------------------------------------------------------------


def test_pairs_files_of_each_kind(tmp_path):
    scored = read_pairs(write_pairs(tmp_path / "scored.csv"))
    assert scored.scores[:2] == [5.0, 4.6] and scored.negatives is None and len(scored) == 8
    (tmp_path / "pos.tsv").write_text("anchor\tpositive\na b\tc d\ne f\tg h\n")
    positives = read_pairs(tmp_path / "pos.tsv")
    assert positives.text1 == ["a b", "e f"] and positives.scores is None
    (tmp_path / "hard.tsv").write_text("q1\tp1\tn1\nq2\tp2\tn2\n")
    assert read_pairs(tmp_path / "hard.tsv").negatives == ["n1", "n2"]
    stsb = read_pairs(STSB_TEST) if STSB_TEST.exists() else None
    if stsb is not None:  # the benchmark's own format: 1,379 pairs with raw quotes kept
        assert len(stsb) == 1379 and stsb.text1[0] == "A girl is styling her hair."
        assert stsb.scores[0] == 2.5


def test_a_missing_column_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "bad.tsv").write_text("q1\tp1\tn1\nq2\tp2\n")
    with pytest.raises(LmlabError, match="row 2 has a missing or empty column"):
        read_pairs(tmp_path / "bad.tsv")
    code, _, err = run_cli(["train", "contrastive", tmp_path / "bad.tsv", "--out",
                            tmp_path / "run", "--encoder", BERT], capsys)  # fmt: skip
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1
    assert "missing" in err and not (tmp_path / "run").exists()


def test_fewer_than_two_sentences_per_batch_is_an_error(tmp_path, capsys):
    (tmp_path / "one.txt").write_text("only one sentence here\n\n")
    with pytest.raises(LmlabError, match="at least two"):
        read_sentences(tmp_path / "one.txt")
    (tmp_path / "two.txt").write_text("one sentence\nanother sentence\n")
    code, _, err = run_cli(["train", "simcse", tmp_path / "two.txt", "--out", tmp_path / "run",
                            "--encoder", BERT, "--batch-size", "1"], capsys)  # fmt: skip
    assert code == 2 and "at least 2" in err and err.count("\n") == 1


# -- training in the one loop ------------------------------------------------------------


def sts_of(encoder, rows=PAIRS) -> float:
    from scipy.stats import spearmanr

    enc = lmlab.load_encoder(encoder)
    a = enc.encode([r[0] for r in rows])
    b = enc.encode([r[1] for r in rows])
    return spearmanr((a * b).sum(1), [r[2] for r in rows]).statistic


def test_cosent_steps_improve_sts_on_the_pairs_trained(tmp_path):
    from lmlab.contrastive.train import train_contrastive

    before = sts_of(BERT)
    config = TrainConfig(steps=30, batch_size=8, lr=1e-3, warmup=0, device="cpu",
                         dtype="float32", seed=0)  # fmt: skip
    result = train_contrastive(write_pairs(tmp_path / "p.csv"), tmp_path / "run",
                               encoder=BERT, config=config, progress=False)  # fmt: skip
    after = sts_of(tmp_path / "run")
    assert result.steps == 30
    assert after > before + 0.2 and after > 0.9, (before, after)
    run = json.loads((tmp_path / "run" / "lmlab.json").read_text())
    assert run["kind"] == "sentence-encoder" and run["base"] == "bert"
    assert run["train"]["loss"] == "cosent"


def test_simcse_reduces_its_loss(tmp_path):
    from lmlab.contrastive.train import train_simcse

    sentences = tmp_path / "s.txt"
    sentences.write_text("\n".join(a for a, b, _ in PAIRS) + "\n")
    config = TrainConfig(steps=20, batch_size=8, lr=1e-3, warmup=0, log_every=1, device="cpu",
                         dtype="float32", seed=0)  # fmt: skip
    result = train_simcse(sentences, tmp_path / "run", encoder=BERT, config=config,
                          progress=False)  # fmt: skip
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    vectors = lmlab.load_encoder(tmp_path / "run").encode(["a cat", "a dog"])
    assert vectors.shape == (2, 128)


@pytest.mark.skipif(no_encoder, reason="no bundled encoder")
def test_a_tuned_minilm_is_an_encoder_everywhere(tmp_path, capsys):
    """mnr with hard negatives on MiniLM; the run: embed, similarity, eval, the server."""
    from fastapi.testclient import TestClient

    from lmlab.serve.app import ServerConfig, create_app

    pairs = tmp_path / "triples.tsv"
    pairs.write_text("".join(f"{a}\t{b}\t{PAIRS[(i + 3) % 8][1]}\n"
                             for i, (a, b, _) in enumerate(PAIRS)))  # fmt: skip
    run = tmp_path / "minilm-run"
    code, out, err = run_cli(["train", "contrastive", pairs, "--out", run, "--steps", "2",
                              "--batch-size", "4", "--no-progress", "--json"], capsys)  # fmt: skip
    assert code in (0, None), err
    assert json.loads(out)["steps"] == 2
    assert json.loads((run / "lmlab.json").read_text())["train"]["loss"] == "mnr"
    vectors = lmlab.load_encoder(run).encode(["a man plays the guitar"])
    assert vectors.shape == (1, 384)
    code, out, _ = run_cli(["similarity", "-m", run, "a cat", "a kitten", "--json"], capsys)
    assert code in (0, None) and "a kitten" in out
    sts = tmp_path / "sts.csv"
    write_pairs(sts)
    code, out, _ = run_cli(["eval", run, sts, "--task", "sts", "--json"], capsys)
    result = json.loads(out)
    assert {"spearman", "pearson", "alignment", "uniformity", "pairs"} <= set(result)
    assert result["pairs"] == 8 and result["spearman"] > 50
    client = TestClient(create_app(ServerConfig(embedding_models=[str(run)])))
    answer = client.post("/v1/embeddings", json={"model": run.name, "input": "a cat"})
    assert answer.status_code == 200, answer.text
    got = np.array(answer.json()["data"][0]["embedding"], dtype=np.float32)
    assert np.allclose(got, lmlab.load_encoder(run).encode("a cat"), atol=1e-5)


def test_eval_sts_json_keys_and_errors(tmp_path, capsys):
    sts = write_pairs(tmp_path / "sts.csv")
    code, out, _ = run_cli(["eval", BERT, sts, "--task", "sts", "--json"], capsys)
    result = json.loads(out)
    assert set(result) >= {"encoder", "file", "pairs", "spearman", "pearson", "alignment",
                           "uniformity"}  # fmt: skip
    assert -100 <= result["spearman"] <= 100 and result["uniformity"] < 0
    (tmp_path / "pairs.tsv").write_text("a\tb\nc\td\n")
    code, _, err = run_cli(["eval", BERT, tmp_path / "pairs.tsv", "--task", "sts"], capsys)
    assert code == 2 and "no score column" in err and err.count("\n") == 1
