"""One contract suite over every causal model trained here: mlp, rnn, lstm, gru, gpt.

Each must be causal, give the same logits read at once or piece by piece through its state,
overfit a tiny corpus, and train reproducibly and resumably through the one trainer.
"""

import pytest
import torch
from safetensors.torch import load_file

import lmlab
from lmlab.lm.neural import MODELS
from lmlab.lm.neural.run import build_model, make_config
from lmlab.training import TrainConfig, evaluate_loss, train

KINDS = [k for k in MODELS if k != "bert"]  # the causal ones (bert: tests/test_bert.py)
SMALL = {  # a few thousand parameters each
    "mlp": dict(context=3, n_embd=8, n_hidden=16, direct=True, block=12),
    "rnn": dict(context=12, n_layer=2, n_embd=16),
    "lstm": dict(context=12, n_layer=2, n_embd=16),
    "gru": dict(context=12, n_layer=2, n_embd=16),
    "gpt": dict(context=12, n_layer=2, n_head=2, n_embd=16),
}


def small_model(kind: str, **kw):
    torch.manual_seed(0)
    return build_model(kind, make_config(kind, vocab_size=30, **{**SMALL[kind], **kw})).eval()


@pytest.mark.parametrize("kind", KINDS)
def test_changing_a_future_token_changes_no_earlier_logit(kind):
    model = small_model(kind)
    ids = torch.randint(30, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 30
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7], b[:, 7])


@pytest.mark.parametrize("kind", KINDS)
def test_reading_through_the_state_gives_the_full_forward_logits(kind):
    model = small_model(kind)
    ids = torch.randint(30, (3, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(3)
        pieces = [model(ids[:, :5], cache), model(ids[:, 5:8], cache)]
        pieces += [model(ids[:, t : t + 1], cache, last_only=True) for t in range(8, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_mlp_sees_exactly_its_window():
    model = small_model("mlp")  # n - 1 = 3
    ids = torch.randint(30, (1, 10), generator=torch.Generator().manual_seed(3))
    changed = ids.clone()
    changed[0, 2] = (changed[0, 2] + 1) % 30
    with torch.no_grad():
        a, b = model(ids)[0], model(changed)[0]
    torch.testing.assert_close(a[5:], b[5:])  # rows 5.. see tokens 3..: not token 2
    assert not torch.allclose(a[4], b[4])  # row 4 sees tokens 2, 3, 4
    with torch.no_grad():  # the first rows see end-of-text padding, as an n-gram model <s>
        padded = model(torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1))[0, 3:]
    torch.testing.assert_close(padded, a)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_each_model_overfits_a_tiny_corpus(kind, tmp_path):
    # A cycle through 26 distinct letters: every letter fixes the next, so loss can reach zero.
    cycle = "".join(sorted("abcdefghijklmnopqrstuvwxyz", key=lambda c: (ord(c) * 7) % 26))
    path = tmp_path / "tiny.txt"
    path.write_text(cycle * 10)
    lr = 3e-2 if kind in ("lstm", "gru") else 1e-2  # gated cells start slower
    config = TrainConfig(
        steps=150, lr=lr, warmup=10, batch_size=8, weight_decay=0, device="cpu", eval_every=50
    )
    options = {**SMALL[kind], "n_embd": 32}
    train(kind, [path], tmp_path / "run", model_options=options, config=config, progress=False)
    lm = lmlab.load_lm(tmp_path / "run")
    ids = torch.tensor(lm.tokenizer.encode(path.read_text()), dtype=torch.int32)
    assert evaluate_loss(lm.model, ids, lm.model.sequence_length) < 0.05  # from log(28) = 3.3
    generated = lmlab.generate(lm, cycle[:5], max_tokens=30, temperature=0).text
    assert generated == (cycle * 3)[5:35]


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_resume_after_a_kill_gives_the_uninterrupted_weights(kind, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * 30)
    config = TrainConfig(steps=25, batch_size=4, warmup=3, eval_every=10, device="cpu")
    options = dict(model_options={**SMALL[kind], "dropout": 0.2}, progress=False)
    train(kind, [path], tmp_path / "whole", config=config, **options)

    def kill(step):
        if step == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(kind, [path], tmp_path / "killed", config=config, on_step=kill, **options)
    train(kind, [path], tmp_path / "killed", config=config, resume=True, **options)
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_another_kind_is_refused(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * 30)
    config = TrainConfig(steps=3, batch_size=4, device="cpu")
    train("gru", [path], tmp_path / "r", model_options=SMALL["gru"], config=config, progress=False)
    with pytest.raises(lmlab.LmlabError, match="holds a 'gru' run"):
        train("lstm", [path], tmp_path / "r", config=config, resume=True)


@pytest.mark.parametrize("kind", ["lstm", "gpt"])
def test_periodic_validation_reads_only_the_first_windows(kind):
    # The estimate during training scores `windows` contexts' worth of text, for stateful and
    # stateless models alike; the final evaluation (no `windows`) reads all of it.
    model = small_model(kind)
    ids = torch.randint(30, (200,), generator=torch.Generator().manual_seed(2), dtype=torch.int32)
    prefix = evaluate_loss(model, ids[: 3 * 12 + 1], 12)
    assert evaluate_loss(model, ids, 12, windows=3) == pytest.approx(prefix, rel=1e-6)
    assert evaluate_loss(model, ids, 12) != pytest.approx(prefix, rel=1e-6)


def test_lstm_runs_in_float32_under_autocast_on_a_cpu_without_bfloat16(monkeypatch):
    """oneDNN has no bfloat16 LSTM there (it raised): the layer computes in float32 instead."""
    import lmlab.lm.neural.rnn as rnn

    monkeypatch.setattr(rnn, "cpu_has_bfloat16", lambda: False)
    torch.manual_seed(0)
    model = build_model("lstm", make_config("lstm", vocab_size=20, n_embd=16, context=8)).eval()
    ids = torch.randint(20, (2, 8))
    with torch.no_grad():
        state, mixed_state = model.new_cache(2), model.new_cache(2)
        exact = [model.hidden_states(ids, state) for _ in range(2)]  # the second continues
        with torch.autocast("cpu", torch.bfloat16):
            mixed = [model.hidden_states(ids, mixed_state) for _ in range(2)]
    assert mixed[1].dtype == torch.float32
    torch.testing.assert_close(mixed, exact)
