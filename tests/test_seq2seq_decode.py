"""Decoding a trained Transformer run: beam search against greedy decoding and against itself
sentence by sentence, scores against teacher forcing, and the translate, eval and attention
commands with their bad input (one-line errors, exit code 2, nothing written)."""

import json
from pathlib import Path

import pytest
import torch

from lmlab.cli import main
from lmlab.errors import LmlabError
from lmlab.sampling import SamplingParams
from lmlab.seq2seq.beam import beam_search
from lmlab.seq2seq.decoding import sample_batch
from lmlab.seq2seq.model import load_seq2seq
from lmlab.training import TrainConfig
from lmlab.training.seq2seq import train_seq2seq

pytestmark = pytest.mark.slow  # the fixture trains a tiny model for 30 steps

DATA = Path("/work/shared/data/en-es")
SOURCES = [
    "A man is playing a guitar.",
    "Two dogs run on the beach in the sun.",
    "Hello.",
    "The woman reads a book while the children play in the garden near the house.",
]


def short_pairs(n: int) -> list[tuple[str, str]]:
    rows = (DATA / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    pairs = [tuple(r.split("\t")) for r in rows]
    return [p for p in pairs if len(p[0].split()) <= 8][:n]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s2s")
    pairs = short_pairs(40)
    (folder / "pairs.tsv").write_text(
        "en\tes\n" + "".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8"
    )
    train_seq2seq(folder / "pairs.tsv", folder / "run", vocab_size=300, preset="tiny",
                  config=TrainConfig(steps=30, batch_size=8, warmup=0, lr=1e-2, device="cpu",
                                     dtype="float32"), progress=False)  # fmt: skip
    return folder / "run"


@pytest.fixture(scope="module")
def s2s(run):
    return load_seq2seq(run)


def ids_of(s2s, texts):
    return s2s.source_token_ids(texts)[0]


def test_beam_one_is_greedy_token_by_token(s2s):
    sources = ids_of(s2s, SOURCES)
    limits = [2 * len(s) + 10 for s in sources]
    greedy = sample_batch(s2s.model, sources, s2s.end_id, limits, SamplingParams(temperature=0))
    beam = beam_search(s2s.model, sources, s2s.end_id, limits, beam=1)
    assert [h.tokens for h in beam] == greedy
    assert s2s.translate(SOURCES, batch_size=3) == [s2s.tokenizer.decode(g).strip() for g in greedy]


def test_a_batched_beam_search_is_each_sentence_searched_alone(s2s):
    sources = ids_of(s2s, SOURCES)
    limits = [2 * len(s) + 10 for s in sources]
    together = beam_search(s2s.model, sources, s2s.end_id, limits, beam=4)
    for source, limit, found in zip(sources, limits, together, strict=True):
        (alone,) = beam_search(s2s.model, [source], s2s.end_id, [limit], beam=4)
        assert found.tokens == alone.tokens
        assert found.log_prob == pytest.approx(alone.log_prob, abs=1e-3)


def test_beam_hypotheses_score_what_the_model_gives_them(s2s):
    """A hypothesis' log-probability is the teacher-forced log-probability of its tokens."""
    sources = ids_of(s2s, SOURCES)
    found = beam_search(s2s.model, sources, s2s.end_id, [12] * len(sources), beam=3)
    for source, hypothesis in zip(sources, found, strict=True):
        tokens = hypothesis.tokens
        ended = len(tokens) < 12
        labels = torch.tensor([*tokens, s2s.end_id] if ended else tokens)
        src = torch.tensor([[*source, s2s.end_id]])
        with torch.no_grad():
            logits = s2s.model(src, None, torch.tensor([[s2s.end_id, *tokens]]))[0]
        logp = torch.log_softmax(logits[: len(labels)].float(), -1)
        assert hypothesis.log_prob == pytest.approx(float(logp[range(len(labels)), labels].sum()),
                                                    abs=1e-3)  # fmt: skip


def test_score_is_the_sum_of_teacher_forced_token_log_probs(s2s):
    sources = SOURCES
    targets = ["Un hombre toca la guitarra.", "Dos perros.", "Hola.", "La mujer lee un libro."]
    scores = s2s.score(sources, targets, batch_size=3)  # padded batches, in another order
    for source, target, score in zip(sources, targets, scores, strict=True):
        ids = s2s.tokenizer.encode(target)
        src = torch.tensor([[*s2s.tokenizer.encode(source), s2s.end_id]])
        with torch.no_grad():
            logits = s2s.model(src, None, torch.tensor([[s2s.end_id, *ids]]))[0].float()
        logp = torch.log_softmax(logits, -1)[range(len(ids) + 1), [*ids, s2s.end_id]]
        assert score == pytest.approx(float(logp.sum()), abs=1e-3)
    assert all(s < 0 for s in scores)


def test_translate_options_that_do_not_go_together(s2s):
    with pytest.raises(LmlabError, match="--beam must be at least 1"):
        s2s.translate(SOURCES, beam=0)
    with pytest.raises(LmlabError, match="temperature is for greedy decoding or sampling"):
        s2s.translate(SOURCES, beam=4, temperature=0.7)
    with pytest.raises(LmlabError, match="source 2 has 200 tokens; this model reads at most 63"):
        s2s.translate(["a", " a" * 200])
    assert len(s2s.translate(["a", " a" * 200], truncate=True)) == 2
    sampled = s2s.translate(SOURCES, temperature=1.0, seed=3)
    assert sampled == s2s.translate(SOURCES, temperature=1.0, seed=3)


def cli(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main([*map(str, args)])
    return e.value.code, capsys.readouterr()


def test_lmlab_translate_a_file(run, s2s, tmp_path, capsys):
    lines = [SOURCES[0], "", SOURCES[1], SOURCES[3]]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    code, shown = cli(capsys, "translate", run, "--file", tmp_path / "in.txt", "--out", out,
                      "--beam", 3, "--batch-size", 2)  # fmt: skip
    assert code == 0, shown.err
    written = out.read_text(encoding="utf-8").split("\n")
    assert written == [*s2s.translate([lines[0]], beam=3), "",
                       *s2s.translate([lines[2], lines[3]], beam=3), ""]  # fmt: skip
    assert "translated 3 of 4 lines" in shown.out
    code, shown = cli(capsys, "translate", run, SOURCES[0], "--beam", 3, "--json")
    assert code == 0, shown.err
    assert json.loads(shown.out) == [{"source": SOURCES[0], "translation": written[0]}]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beam", "0"], "error: --beam must be at least 1 (1 is greedy decoding), got 0"),
        (["--beam", "2", "--temperature", "0.5"], "error: beam search picks the most likely"),
        (["--max-tokens", "0"], "error: --max-tokens must be at least 1"),
    ],
)
def test_lmlab_translate_bad_options(run, tmp_path, capsys, args, message):
    (tmp_path / "in.txt").write_text("Hello.\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    code, shown = cli(capsys, "translate", run, "--file", tmp_path / "in.txt", "--out", out, *args)
    assert code == 2
    assert shown.err.startswith(message) and shown.err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.txt"]


def test_lmlab_translate_bad_files(run, tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Hello.\nEl niño.\n".encode("latin-1"))
    out = tmp_path / "out.txt"
    code, shown = cli(capsys, "translate", run, "--file", bad, "--out", out)
    assert code == 2
    assert shown.err == f"error: {bad} is not UTF-8 text (byte 13, line 2)\n"
    assert not out.exists()
    code, shown = cli(capsys, "translate", run, "--file", tmp_path / "none.txt", "--out", out)
    assert (code, shown.err) == (2, f"error: {tmp_path / 'none.txt'} does not exist\n")
    code, shown = cli(capsys, "translate", run, "Hello.", "--file", bad)
    assert (code, shown.err) == (2, "error: give TEXTS or --file (both were given)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latin1.txt"]


def test_lmlab_translate_a_run_of_another_kind(tmp_path, capsys):
    other = tmp_path / "gpt"
    other.mkdir()
    (other / "lmlab.json").write_text(json.dumps({"kind": "gpt", "model": {}, "train": {}}))
    code, shown = cli(capsys, "translate", other, "Hello.", "--beam", 4)
    assert code == 2
    assert shown.err == (
        f"error: {other} holds a 'gpt' run, not a sequence-to-sequence model "
        "(lmlab train seq2seq)\n"
    )


def test_lmlab_eval_a_seq2seq_run(run, s2s, tmp_path, capsys):
    import sacrebleu

    pairs = short_pairs(60)[40:]
    pairs.append((" ".join(["word"] * 15), "palabra"))  # 11-20 words
    table = tmp_path / "test.tsv"
    table.write_text("en\tes\n" + "".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    code, shown = cli(capsys, "eval", run, table, "--beam", 2, "--json")
    assert code == 0, shown.err
    result = json.loads(shown.out)
    assert set(result) >= {"bleu", "chrf", "loss", "perplexity", "bleu_by_length", "pairs",
                           "pairs_by_length", "tokens", "beam"}  # fmt: skip
    sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
    translations = s2s.translate(sources, beam=2)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(translations, [targets]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(translations, [targets]).score)
    scores = s2s.score(sources, targets)
    tokens = sum(len(s2s.tokenizer.encode(t)) + 1 for t in targets)
    assert result["tokens"] == tokens
    assert result["loss"] == pytest.approx(-sum(scores) / tokens, rel=1e-5)
    assert result["pairs_by_length"] == {"1-10": 20, "11-20": 1, "21-40": 0}
    assert result["bleu_by_length"]["21-40"] is None
    assert (result["pairs"], result["beam"]) == (21, 2)


def test_lmlab_eval_bad_tables(run, tmp_path, capsys):
    cases = {
        "cols.tsv": (b"english\tspanish\nHello.\tHola.\n", "has no column 'en'"),
        "empty.tsv": ("en\tes\nHello.\tHola.\n\tAdiós.\nYes.\t\n".encode(), "empty"),
        "latin1.tsv": ("en\tes\nThe boy.\tEl niño.\n".encode("latin-1"), "UTF-8"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        code, shown = cli(capsys, "eval", run, tmp_path / name, "--json")
        assert code == 2, (name, shown)
        assert shown.err.startswith("error: ") and shown.err.count("\n") == 1, shown.err
        assert message in shown.err, shown.err
        assert shown.out == ""


def test_lmlab_attention(run, s2s, tmp_path, capsys):
    out = tmp_path / "attn.png"
    code, shown = cli(capsys, "attention", run, "A man is playing a guitar.", "--out", out,
                      "--json")  # fmt: skip
    assert code == 0, shown.err
    result = json.loads(shown.out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["source_words"] == ["A", "man", "is", "playing", "a", "guitar.", "</s>"]
    assert result["translation"] == s2s.translate(["A man is playing a guitar."])[0]
    weights = torch.tensor(result["weights"])
    assert weights.shape == (len(result["target_words"]), 7)
    torch.testing.assert_close(weights.sum(1), torch.ones(len(weights)))
    code, shown = cli(capsys, "attention", run, "Hello.", "--out", tmp_path / "b.png", "--beam", 0)
    assert code == 2 and shown.err.startswith("error: --beam must be at least 1")
    assert not (tmp_path / "b.png").exists()


def test_cross_attention_rows_are_the_attention_probabilities(s2s):
    src = torch.tensor([[*s2s.tokenizer.encode("Two dogs."), s2s.end_id, s2s.end_id]])
    keep = torch.tensor([[1] * (src.shape[1] - 1) + [0]])  # the last position is padding
    tgt = torch.tensor([[s2s.end_id, *s2s.tokenizer.encode("Dos perros.")]])
    weights = s2s.model.cross_attention(src, keep, tgt)
    assert weights.shape == (1, tgt.shape[1], src.shape[1])
    assert torch.all(weights[..., -1] == 0)  # padding is never attended
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, tgt.shape[1]))
