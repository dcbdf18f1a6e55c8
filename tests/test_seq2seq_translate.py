"""A seq2seq run conditioned on a source is a LanguageModel: its scores are the model's
teacher-forced ones, LM decoding through it is greedy decoding of the model, and
`lmlab translate` prints it."""

import json

import pytest
import torch

from lmlab.cli import main
from lmlab.decode import generate
from lmlab.errors import LmlabError
from lmlab.seq2seq.model import load_seq2seq
from lmlab.training import TrainConfig
from lmlab.training.seq2seq import train_seq2seq

pytestmark = pytest.mark.slow  # the fixture trains a tiny model for 40 steps

WORDS = ["the", "a", "cat", "dog", "sees", "likes", "small", "big", "red", "old", "house", "tree"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s2s")
    rng = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(60):
        words = [WORDS[i] for i in torch.randint(len(WORDS), (5,), generator=rng)]
        rows.append(f"{' '.join(words)}\t{' '.join(reversed(words))}\n")
    (folder / "pairs.tsv").write_text("src\ttgt\n" + "".join(rows))
    train_seq2seq(folder / "pairs.tsv", folder / "run", vocab_size=290, preset="tiny",
                  config=TrainConfig(steps=40, batch_size=8, warmup=0, lr=1e-2, device="cpu",
                                     dtype="float32"), progress=False)  # fmt: skip
    return folder / "run"


def greedy_by_full_forward(model, source_ids, end, steps, stop_at_end):
    """Argmax decoding that re-reads the whole target every step (no cache, no LM wrapper)."""
    src = torch.tensor([[*source_ids, end]])
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(src, None, torch.tensor([[end, *out]]))[0, -1]
            token = int(logits.argmax())
            if stop_at_end and token == end:
                break
            out.append(token)
    return out


def test_the_conditioned_lm_scores_as_teacher_forcing(run):
    s2s = load_seq2seq(run)
    source, target = "the cat sees a dog", "dog a sees cat the"
    lm = s2s.condition(source)
    ids = s2s.tokenizer.encode(target)
    state = lm.new_state(2)  # two rows read the same source
    scores = lm.forward(state, torch.tensor([[s2s.end_id, *ids]] * 2), all_positions=True)
    src = torch.tensor([[*s2s.tokenizer.encode(source), s2s.end_id]])
    with torch.no_grad():
        forced = s2s.model(src, None, torch.tensor([[s2s.end_id, *ids]]))
    torch.testing.assert_close(scores[0], forced[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores[1], forced[0], atol=1e-5, rtol=1e-5)
    assert state.length == len(ids) + 1


def test_lm_decoding_through_the_condition_is_the_models_greedy_decoding(run):
    s2s = load_seq2seq(run)
    source = "a big red house sees the old tree"
    lm = s2s.condition(source)
    out = generate(lm, [s2s.end_id], temperature=0, max_tokens=12, ignore_eos=True)
    expected = greedy_by_full_forward(s2s.model, s2s.tokenizer.encode(source), s2s.end_id, 12,
                                      stop_at_end=False)  # fmt: skip
    assert out.token_ids == expected
    ids = greedy_by_full_forward(s2s.model, s2s.tokenizer.encode(source), s2s.end_id, 21,
                                 stop_at_end=True)  # fmt: skip
    assert s2s.translate([source]) == [s2s.tokenizer.decode(ids).strip()]


def test_a_source_longer_than_the_positions_is_an_error(run):
    s2s = load_seq2seq(run)
    with pytest.raises(LmlabError, match="this model reads at most 63"):
        s2s.condition(" ".join(["cat"] * 100))


def test_lmlab_translate(run, tmp_path, capsys):
    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main(["translate", *map(str, args)])
        return e.value.code, capsys.readouterr()

    code, out = cli(run, "the cat", "a dog", "--json")
    assert code == 0, out.err
    rows = json.loads(out.out)
    assert [r["source"] for r in rows] == ["the cat", "a dog"]
    assert [r["translation"] for r in rows] == load_seq2seq(run).translate(["the cat", "a dog"])
    other = tmp_path / "gpt"
    other.mkdir()
    (other / "lmlab.json").write_text(json.dumps({"kind": "gpt", "model": {}, "train": {}}))
    code, out = cli(other, "hello")
    assert code == 2
    assert out.err.strip() == (
        f"error: {other} holds a 'gpt' run, not a sequence-to-sequence model (lmlab train seq2seq)"
    )


def test_load_lm_on_a_seq2seq_run_says_what_it_is(run):
    from lmlab.models import load_lm

    with pytest.raises(LmlabError, match=r"is a sequence-to-sequence model.*lmlab translate"):
        load_lm(run)
