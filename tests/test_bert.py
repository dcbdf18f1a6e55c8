"""BERT: the masked-LM corruption rates, attention in both directions, training, fill-mask."""

import json

import pytest
import torch

import lmlab
from lmlab.errors import LmlabError
from lmlab.lm.neural.bert import IGNORE, BertConfig, BertMLM, mask_tokens, next_sentence_pairs
from lmlab.lm.neural.run import load_masked_lm
from lmlab.training import TrainConfig, train

MASK, SPECIALS = 4, torch.tensor([0, 1, 2, 3, 4])


def test_masking_rates_on_a_large_sample():
    ids = torch.randint(5, 1000, (1000, 200), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 2  # a special token ([CLS]) in every row: never chosen
    inputs, labels = mask_tokens(
        ids, mask_id=MASK, vocab_size=1000, special_ids=SPECIALS,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    chosen = labels != IGNORE
    n = chosen.sum().item()
    assert abs(n / ids[:, 1:].numel() - 0.15) < 0.005  # 200k tokens: sd of the rate is 0.0008
    assert not chosen[:, 0].any()
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])  # the rest are untouched
    masked = (inputs[chosen] == MASK).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(replaced - 0.1) < 0.01


def test_attention_sees_both_directions_and_ignores_padding():
    torch.manual_seed(0)
    model = BertMLM(BertConfig(vocab_size=40, context=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(5, 40, (1, 10))
    changed = ids.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 40
    with torch.no_grad():
        assert not torch.allclose(model(ids)[0, 2], model(changed)[0, 2])  # a later token matters
        keep = torch.ones(1, 10, dtype=torch.bool)
        keep[0, 8:] = False  # positions 8, 9 are padding: changing them changes nothing before
        torch.testing.assert_close(model(ids, keep)[0, :8], model(changed, keep)[0, :8])
        torch.testing.assert_close(model.embed(ids, keep), model.embed(changed, keep))


def test_logits_at_chosen_positions_equal_the_full_tables_rows():
    torch.manual_seed(0)
    model = BertMLM(BertConfig(vocab_size=40, context=16, n_layer=2, n_head=2, n_embd=16)).eval()
    ids = torch.randint(5, 40, (3, 12))
    at = torch.rand(3, 12) < 0.3
    full = model(ids)
    assert torch.allclose(model(ids, at=at), full[at], atol=1e-6)
    assert model(ids, at=at).shape == (int(at.sum()), 40)


@pytest.mark.slow
def test_bert_learns_to_fill_the_mask(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat . the dog lay on the rug .\n" * 200)
    # Masked LMs with learned positions sit at the unigram loss (~2.0 here) for a few hundred
    # steps before attention finds the neighbours; 1500 steps get well past it.
    config = TrainConfig(
        steps=1500, lr=3e-3, warmup=20, batch_size=16, device="cpu", eval_every=500
    )
    result = train("bert", [path], tmp_path / "bert", preset="tiny", config=config,
                   valid_fraction=0.1, vocab_size=60, progress=False)  # fmt: skip
    assert result.valid_loss < 1.0  # the unigram entropy of the corpus is 2.05 nats
    mlm = load_masked_lm(tmp_path / "bert")
    best = mlm.fill_mask("the cat sat on the [MASK] . the dog lay on the rug .")[0][0]
    assert best[0] == "mat" and best[1] > 0.5
    vectors = mlm.encode(["the cat sat", "the dog lay on the rug"])
    assert vectors.shape == (2, 32)
    with pytest.raises(LmlabError, match=r"is a masked language model.*fill-mask"):
        lmlab.load_lm(tmp_path / "bert")  # eval, score and generate: a causal LM only


def test_a_masked_lm_needs_a_mask_token(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat .\n" * 50)
    with pytest.raises(Exception, match=r"\[MASK\] token"):
        train("bert", [path], tmp_path / "b", tokenizer="char", preset="tiny",
              config=TrainConfig(steps=2, device="cpu"), progress=False)  # fmt: skip


def test_next_sentence_pairs_by_hand():
    windows = torch.arange(100, 132).view(4, 8)  # four spans of 8 tokens of the text
    stream = torch.arange(500, 600)
    ids, segments, is_next = next_sentence_pairs(
        windows, stream, cls_id=2, sep_id=3, generator=torch.Generator().manual_seed(0)
    )
    assert ids.shape == segments.shape == (4, 8)
    for b in range(4):
        row, seps = ids[b].tolist(), (ids[b] == 3).nonzero().flatten().tolist()
        a = seps[0] - 1  # [CLS] A [SEP] B [SEP]
        assert row[0] == 2 and len(seps) == 2 and seps[1] == 7 and 1 <= a <= 4
        assert row[1 : a + 1] == windows[b, :a].tolist()  # A: the start of the span
        second = row[a + 2 : 7]
        if is_next[b]:
            assert second == windows[b, a : a + len(second)].tolist()  # B: what follows A
        else:
            assert second[0] >= 500 and second == list(range(second[0], second[0] + len(second)))
        assert segments[b].tolist() == [0] * (a + 2) + [1] * (6 - a)
    many = next_sentence_pairs(torch.arange(64000).view(8000, 8), stream, cls_id=2, sep_id=3,
                               generator=torch.Generator().manual_seed(1))[2]  # fmt: skip
    assert abs(many.float().mean().item() - 0.5) < 0.02  # half are true next sentences


def test_without_nsp_the_model_is_unchanged_with_it_gains_segments_and_a_head():
    names = set(BertMLM(BertConfig(vocab_size=40, context=16, n_layer=1, n_head=2, n_embd=16))
                .state_dict())  # fmt: skip
    assert not any(n.startswith(("wse", "nsp_head")) for n in names)
    torch.manual_seed(0)
    model = BertMLM(BertConfig(vocab_size=40, context=16, n_layer=1, n_head=2, n_embd=16, nsp=True))
    assert set(model.state_dict()) - names == {
        "wse.weight", "nsp_head.0.weight", "nsp_head.0.bias", "nsp_head.2.weight",
        "nsp_head.2.bias",
    }  # fmt: skip
    ids = torch.randint(5, 40, (2, 10))
    segments = torch.zeros_like(ids)
    segments[:, 5:] = 1
    with torch.no_grad():
        logits, nsp_logits = model.eval()(ids, None, segments, nsp=True)
        assert logits.shape == (2, 10, 40) and nsp_logits.shape == (2, 2)
        assert not torch.allclose(model(ids, None, segments), model(ids))  # segments matter


def test_nsp_training_reports_loss_and_accuracy(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat . the dog lay on the rug .\n" * 100)
    config = TrainConfig(steps=6, batch_size=4, warmup=1, eval_every=3, log_every=2, device="cpu")
    options = dict(context=16, n_layer=1, n_head=2, n_embd=16)
    train("bert", [path], tmp_path / "nsp", model_options={**options, "nsp": True}, config=config,
          valid_fraction=0.2, vocab_size=60, progress=False)  # fmt: skip
    records = [json.loads(x) for x in (tmp_path / "nsp" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4, 6]
    for r in logged:  # loss = MLM + NSP; an untrained NSP head is near log 2
        assert 0.3 < r["nsp_loss"] < 1.2 and 0 <= r["nsp_accuracy"] <= 1
        assert r["loss"] > r["nsp_loss"]
    final = next(r for r in records if r.get("final"))
    assert 0.3 < final["valid_nsp_loss"] < 1.2 and 0 <= final["valid_nsp_accuracy"] <= 1
    assert lmlab.load_encoder(tmp_path / "nsp").encode("the cat").shape == (16,)
    train("bert", [path], tmp_path / "plain", model_options=options, config=config,
          valid_fraction=0.2, vocab_size=60, progress=False)  # fmt: skip
    plain = (tmp_path / "plain" / "metrics.jsonl").read_text()
    assert "nsp" not in plain
