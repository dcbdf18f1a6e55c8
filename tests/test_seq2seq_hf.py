"""A local Hugging Face encoder-decoder folder (a tiny random T5 saved here, nothing
downloaded) loads through load_seq2seq and `lmlab translate`: its generate-based translation is
what LM decoding through `condition` gives, and its cache reorders as beam search needs."""

import json

import pytest
import torch
from seq2seq_models import save_tiny_t5

from lmlab.cli import main
from lmlab.decode import generate
from lmlab.seq2seq.hf import HFSeq2Seq
from lmlab.seq2seq.model import load_seq2seq


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return save_tiny_t5(tmp_path_factory.mktemp("t5"))


def test_translate_is_lm_decoding_through_the_condition(t5):
    s2s = load_seq2seq(t5)
    assert isinstance(s2s, HFSeq2Seq) and s2s.start_id == 0 and s2s.end_id == 1
    source = "the big cat sees a red house"
    lm = s2s.condition(source)
    expected = generate(lm, [s2s.start_id], temperature=0, max_tokens=6,
                        sampling_defaults="model")  # fmt: skip
    got = s2s.translate([source, "a dog"], max_tokens=6)
    assert got[0] == expected.text.strip()
    assert got[1] == s2s.translate("a dog", max_tokens=6)[0]  # padded in a batch = alone
    assert len(s2s.translate([source], beam=3, max_tokens=6)) == 1


def test_the_adapter_scores_as_the_model_and_its_cache_reorders(t5):
    s2s = load_seq2seq(t5)
    model = s2s.model
    ids = [s2s.source_ids("the cat sees a dog"), s2s.source_ids("a tree")]
    S = max(map(len, ids))
    src = torch.tensor([r + [0] * (S - len(r)) for r in ids])
    keep = torch.tensor([[1] * len(r) + [0] * (S - len(r)) for r in ids])
    tgt = torch.tensor([[0, 5, 6, 7], [0, 8, 9, 10]])
    with torch.no_grad():
        full = model(src, keep, tgt)
        cache = model.new_cache(model.encode(src, keep), keep)
        model.decode(tgt[:, :2], cache=cache)
        rows = torch.tensor([1, 0, 0])
        cache.reorder(rows)
        rest = model.decode(tgt[rows, 2:], cache=cache)
    torch.testing.assert_close(rest, full[rows, 2:], atol=1e-5, rtol=1e-5)
    assert cache.length == 4


def test_the_cli_translates_a_folder_and_refuses_a_causal_one(t5, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["translate", str(t5), "the cat sees a dog", "--max-tokens", "5"])
    out = capsys.readouterr()
    assert e.value.code == 0, out.err
    assert out.out.strip() == load_seq2seq(t5).translate("the cat sees a dog", max_tokens=5)[0]
    causal = tmp_path / "gpt"
    causal.mkdir()
    (causal / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(SystemExit) as e:
        main(["translate", str(causal), "hello"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "holds a 'gpt2' model, not an encoder-decoder" in err
    assert len(err.strip().splitlines()) == 1
