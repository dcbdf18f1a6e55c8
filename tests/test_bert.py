"""BERT: the masked-LM corruption rates, attention in both directions, training, fill-mask."""

import pytest
import torch

from lmlab.lm.neural.bert import IGNORE, BertConfig, BertMLM, mask_tokens
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


def test_a_masked_lm_needs_a_mask_token(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat .\n" * 50)
    with pytest.raises(Exception, match=r"\[MASK\] token"):
        train("bert", [path], tmp_path / "b", tokenizer="char", preset="tiny",
              config=TrainConfig(steps=2, device="cpu"), progress=False)  # fmt: skip
