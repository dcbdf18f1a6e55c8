"""The one trainer: overfitting, seeds, exact resume, checkpoints, run directories, bad input."""

import itertools
import json
import math
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import lmlab
from lmlab.errors import LmlabError
from lmlab.training import (
    TrainConfig,
    clip_in_update,
    evaluate_loss,
    learning_rate,
    optimizer_for,
    train,
)

TEXT = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n" * 40


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def quick(**kw) -> TrainConfig:
    return TrainConfig(
        **{"steps": 30, "batch_size": 4, "warmup": 5, "eval_every": 10, "device": "cpu", **kw}
    )


TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "context": 16}


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_learning_rate_warms_up_then_decays_to_min_lr():
    config = TrainConfig(lr=1.0, min_lr=0.1, warmup=10)
    rates = [learning_rate(s, config, 110) for s in range(111)]
    assert rates[0] == pytest.approx(1 / 11) and rates[9] == pytest.approx(10 / 11)
    assert rates[10] == pytest.approx(1.0) and rates[110] == pytest.approx(0.1)
    assert rates[60] == pytest.approx(0.1 + 0.5 * 0.9)  # half way down the cosine
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))


def test_a_time_budget_keeps_the_warm_up_in_steps():
    """With --minutes, the decay follows the share of the time spent after the warm-up, which
    still takes its steps: a budget of 30 minutes and a nominal 100,000 steps had ended a
    400-step warm-up after 7 s (14 steps), and the en-es Transformer trailed Marian by 9 BLEU;
    and a warm-up that took 60% of the time must not start the decay 60% of the way down."""
    from types import SimpleNamespace

    from lmlab.training.loop import Loop

    def where(steps_and_seconds, budget: float | None = 1800.0) -> list[int]:
        loop = SimpleNamespace(config=TrainConfig(warmup=400), budget=budget, total=100_000,
                               warmed=None)  # fmt: skip
        at = []
        for step, seconds in steps_and_seconds:
            loop.step, loop.seconds = step, lambda s=seconds: s
            at.append(Loop.schedule_step(loop))
        return at

    assert where([(10, 900.0), (399, 1800.0)]) == [10, 399]  # still warming up
    # the warm-up ended at 0 s: half the time is half the decay; all the time, its end
    assert where([(400, 0.0), (500, 900.0), (501, 1e9)]) == [400, 400 + 49_800, 100_000]
    # the warm-up took 1,080 of 1,800 s: the decay starts there and runs over the 720 s left
    assert where([(400, 1080.0), (401, 1080.0), (500, 1440.0)]) == [400, 401, 400 + 49_800]
    assert where([(400, 2000.0)]) == [100_000]  # no time left after the warm-up: the end
    assert where([(500, 900.0)], budget=None) == [500]  # no budget: steps alone


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_clipping_in_the_update_is_clip_grad_norm(optimizer):
    from lmlab.lm.neural.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    models = [GPT(GPTConfig(vocab_size=20, context=16, n_layer=1, n_embd=16)) for _ in "ab"]
    models[1].load_state_dict(models[0].state_dict())
    config = TrainConfig(optimizer=optimizer, lr=0.01)
    optimizers = [optimizer_for(m, config) for m in models]
    x = torch.randint(20, (4, 17))
    for max_norm in (0.05, 1e6):  # clipped, then not
        norms = []
        for model in models:
            loss = torch.nn.functional.cross_entropy(
                model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()
            )
            loss.backward()
            norms.append(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
        assert norms[0] == pytest.approx(norms[1].item()) and (norms[0] > max_norm) == (
            max_norm < 1
        )
        torch.nn.utils.clip_grad_norm_(models[0].parameters(), max_norm)
        clip_in_update(optimizers[1], models[1].parameters(), max_norm)
        for opt in optimizers:
            opt.step()
            opt.zero_grad()
        for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_same_seed_same_weights_other_seed_other_weights(corpus, tmp_path):
    runs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        train(
            "gpt",
            [corpus],
            tmp_path / name,
            model_options={**TINY, "dropout": 0.1},
            config=quick(seed=seed),
            progress=False,
        )
        runs[name] = weights(tmp_path / name)
    assert all(torch.equal(runs["a"][k], runs["b"][k]) for k in runs["a"])
    assert not all(torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_resume_after_a_kill_gives_the_uninterrupted_weights(corpus, tmp_path):
    options = dict(model_options={**TINY, "dropout": 0.1}, valid_fraction=0.2, progress=False)
    train("gpt", [corpus], tmp_path / "whole", config=quick(), **options)

    def kill(step):
        if step == 17:  # between two checkpoints (every 10 steps)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("gpt", [corpus], tmp_path / "killed", config=quick(), on_step=kill, **options)
    state = torch.load(tmp_path / "killed" / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 17
    train("gpt", [corpus], tmp_path / "killed", config=quick(), resume=True, **options)
    for folder in ("checkpoint", "."):
        a, b = weights(tmp_path / "whole" / folder), weights(tmp_path / "killed" / folder)
        assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    whole = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in lines]
    assert strip == [{k: v for k, v in json.loads(x).items() if k != "tokens_per_s"} for x in whole]


def test_resume_with_other_options_or_kind_is_refused(corpus, tmp_path):
    train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(), progress=False)
    with pytest.raises(LmlabError, match="differ: lr"):
        train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(lr=0.5),
              resume=True)  # fmt: skip
    with pytest.raises(LmlabError, match="already holds a training run"):
        train("gpt", [corpus], tmp_path / "r", config=quick())
    with pytest.raises(LmlabError, match="nothing to resume"):
        train("gpt", [corpus], tmp_path / "fresh", config=quick(), resume=True)


def test_run_directory_and_validation(corpus, tmp_path):
    result = train(
        "gpt",
        [corpus],
        tmp_path / "r",
        model_options=TINY,
        valid_fraction=0.1,
        config=quick(),
        progress=False,
    )
    run = tmp_path / "r"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "lmlab.json",
        "metrics.jsonl",
        "loss.png",
        "valid.txt",
    ):
        assert (run / name).is_file(), name
    assert json.loads((run / "lmlab.json").read_text())["kind"] == "gpt"
    assert (run / "valid.txt").read_text() == TEXT[int(len(TEXT) * 0.9) :]
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "valid_loss" in r and not r.get("final")] == [10, 20, 30]
    # the reported validation loss is the mean cross-entropy of the held-out text
    lm = lmlab.load_lm(run)
    ids = torch.tensor(lm.tokenizer.encode((run / "valid.txt").read_text()), dtype=torch.int32)
    assert result.valid_loss == pytest.approx(evaluate_loss(lm.model, ids, 16), rel=1e-5)
    assert result.valid_perplexity == pytest.approx(math.exp(result.valid_loss))


def test_trained_model_works_with_generate_and_score(corpus, tmp_path):
    train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(), progress=False)
    lm = lmlab.load_lm(tmp_path / "r")
    out = lmlab.generate(lm, "the quick", max_tokens=40, temperature=0)
    assert len(out.token_ids) == 40  # past the 16-token context: the window slides
    text = TEXT[:300]
    s = lmlab.score(lm, text)
    assert s.n_tokens == len(lm.tokenizer.encode(text)) - 1
    # the first 16 scores are the model's own log-probabilities of each next character
    ids = torch.tensor([lm.tokenizer.encode(text[:16])])
    logp = lm.model(ids).log_softmax(-1)[0, :-1].gather(1, ids[0, 1:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(s.logprobs[:15]), logp.detach(), atol=1e-5, rtol=0)


def test_reading_past_the_context_slides_the_window(corpus, tmp_path):
    train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(), progress=False)
    lm = lmlab.load_lm(tmp_path / "r")
    ids = torch.tensor([lm.tokenizer.encode(TEXT[:40])])
    state = lm.new_state(1)
    logits = lm.forward(state, ids, all_positions=True)  # 40 tokens through a 16-token cache
    assert logits.shape[1] == 40
    with torch.no_grad():  # the cache slid at 16 (keeping 8..15) and at 24 (keeping 16..23)
        expected = lm.model(ids[:, 16:31])[0, -1]
        torch.testing.assert_close(logits[0, 30], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[0, :16], lm.model(ids[:, :16])[0], atol=1e-5, rtol=0)
    one_by_one = lm.new_state(1)
    steps = [lm.forward(one_by_one, ids[:, t : t + 1]) for t in range(40)]
    torch.testing.assert_close(torch.stack(steps, 1), logits, atol=1e-5, rtol=1e-5)


def test_early_stopping_keeps_the_best_model(corpus, tmp_path):
    result = train(
        "gpt",
        [corpus],
        tmp_path / "r",
        model_options=TINY,
        valid_fraction=0.1,
        config=quick(steps=400, lr=0.3, eval_every=5, patience=2),
        progress=False,
    )
    assert result.stopped_early and result.steps < 400
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    evals = [r["valid_loss"] for r in records if "valid_loss" in r and not r.get("final")]
    assert result.valid_loss <= min(evals) + 0.05  # the final evaluation is of the best weights


def test_bad_input_is_a_clear_error(tmp_path, corpus):
    small = tmp_path / "small.txt"
    small.write_text("too short")
    with pytest.raises(LmlabError, match="too few for one batch"):
        train("gpt", [small], tmp_path / "a", model_options=TINY, config=quick())
    with pytest.raises(LmlabError, match="the loss became"):
        train(
            "gpt",
            [corpus],
            tmp_path / "b",
            model_options=TINY,
            config=quick(lr=1e30, grad_clip=0, warmup=0),
            progress=False,
        )
    with pytest.raises(LmlabError, match="valid-fraction"):
        train("gpt", [corpus], tmp_path / "c", valid_fraction=1.5, config=quick())


def test_a_run_that_fails_before_its_first_checkpoint_removes_what_it_made(tmp_path, corpus):
    small = tmp_path / "small.txt"
    small.write_text("too short")
    out = tmp_path / "runs" / "new"  # neither folder exists yet
    with pytest.raises(LmlabError, match="too few for one batch"):
        train("gpt", [small], out, model_options=TINY, config=quick(), progress=False)
    assert not (tmp_path / "runs").exists()  # the tokenizer it had written went with them
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(LmlabError):
        train("gpt", [empty], out, model_options=TINY, config=quick(), progress=False)
    assert not (tmp_path / "runs").exists()
    # A folder the user had keeps what it held, and only that.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(LmlabError, match="fewer than one window"):
        train("gpt", [corpus], mine, model_options=TINY, valid_fraction=0.001, config=quick(),
              progress=False)  # fmt: skip
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    # A rerun with good options starts afresh; a run killed after its first checkpoint stays.
    train("gpt", [corpus], mine, model_options=TINY, config=quick(steps=2), progress=False)
    assert (mine / "checkpoint").is_dir() and (mine / "notes.txt").read_text() == "mine"
    with pytest.raises(LmlabError, match="the loss became"):
        train("gpt", [corpus], tmp_path / "nan", model_options=TINY, progress=False,
              config=quick(lr=1e30, grad_clip=0, warmup=0, eval_every=1))  # fmt: skip
    assert (tmp_path / "nan" / "checkpoint").is_dir()  # the steps before it can be resumed


@pytest.mark.parametrize(
    ("kind", "model", "train_options", "message"),
    [
        ("gpt", {"context": 0}, {}, "gpt: --context (context) must be at least 1, got 0"),
        ("gpt", {"n_embd": -3}, {}, "gpt: --dim (n_embd) must be at least 1, got -3"),
        ("lstm", {"n_layer": 0}, {}, "lstm: --layers (n_layer) must be at least 1"),
        ("mlp", {"n_hidden": 0}, {}, "mlp: --hidden (n_hidden) must be at least 1"),
        ("gpt", {"dropout": 1.5}, {}, "gpt: --dropout (dropout) must be in [0, 1)"),
        ("gpt", {}, {"warmup": -5}, "--warmup must be at least 0"),
        ("gpt", {}, {"weight_decay": -1}, "--weight-decay must be >= 0"),
        ("gpt", {}, {"grad_clip": -1}, "--grad-clip must be >= 0"),
        ("gpt", {}, {"patience": 0}, "--patience must be at least 1"),
    ],
)
def test_sizes_and_options_out_of_range_are_named(tmp_path, corpus, kind, model, train_options,
                                                  message):  # fmt: skip
    options = model if kind != "gpt" else {**TINY, **model}
    with pytest.raises(LmlabError, match=re.escape(message)):
        train(kind, [corpus], tmp_path / "r", model_options=options,
              config=quick(**train_options), progress=False)  # fmt: skip
    assert not (tmp_path / "r").exists()  # nothing written


@pytest.mark.slow
def test_cli_train_then_generate_and_score(corpus, tmp_path):
    def lmlab_cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "lmlab", *args], capture_output=True, text=True, timeout=600
        )

    run = tmp_path / "run"
    config = tmp_path / "c.toml"
    config.write_text("layers = 1\nheads = 2\ndim = 16\ncontext = 16\nsteps = 20\n")
    out = lmlab_cli(
        "train",
        "gpt",
        str(corpus),
        "--out",
        str(run),
        "--config",
        str(config),
        "--valid-fraction",
        "0.1",
        "--batch-size",
        "4",
        "--positions",
        "learned",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["steps"] == 20 and data["valid_loss"] > 0
    model = json.loads((run / "lmlab.json").read_text())["model"]
    assert model["n_layer"] == 1 and model["positions"] == "learned"
    gen = lmlab_cli("generate", "--model", str(run), "the ", "--max-tokens", "5", "--json")
    assert gen.returncode == 0, gen.stderr
    score = lmlab_cli("score", str(run / "valid.txt"), "--model", str(run), "--json")
    assert json.loads(score.stdout)["tokens"] == len((run / "valid.txt").read_text()) - 1
    again = lmlab_cli("train", "gpt", str(corpus), "--out", str(run), "--steps", "20")
    assert again.returncode == 2 and again.stderr.startswith("error:")
    for kind, positions in (("gpt", "absolute"), ("lstm", "rope")):
        bad = lmlab_cli("train", kind, str(corpus), "--out", str(tmp_path / kind),
                        "--positions", positions)  # fmt: skip
        assert bad.returncode == 2 and bad.stderr.startswith("error:"), bad.stderr
        assert "positions" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_fine_tuning_starts_from_a_run_and_freezes_the_first_blocks(corpus, tmp_path):
    shape = {**TINY, "n_layer": 2}
    train("gpt", [corpus], tmp_path / "base", model_options=shape, config=quick(), progress=False)
    other = tmp_path / "other.txt"
    other.write_text("a stitch in time saves nine. " * 60)
    train("gpt", [other], tmp_path / "tuned", init_from=tmp_path / "base", freeze=1,
          model_options={"dropout": 0.1}, config=quick(steps=10), progress=False)  # fmt: skip
    base, tuned = weights(tmp_path / "base"), weights(tmp_path / "tuned")
    frozen = [k for k in base if k.startswith(("wte", "wpe", "blocks.0."))]
    trained = [k for k in base if k.startswith(("blocks.1.", "ln_f"))]
    assert frozen and trained
    assert all(torch.equal(base[k], tuned[k]) for k in frozen)
    assert all(not torch.equal(base[k], tuned[k]) for k in trained if "weight" in k)
    assert (tmp_path / "tuned" / "tokenizer.json").read_bytes() == (
        tmp_path / "base" / "tokenizer.json"
    ).read_bytes()
    with pytest.raises(LmlabError, match="do not change n_embd"):
        train("gpt", [other], tmp_path / "x", init_from=tmp_path / "base",
              model_options={"n_embd": 32}, config=quick())  # fmt: skip
    with pytest.raises(LmlabError, match="holds a 'gpt' model, not 'lstm'"):
        train("lstm", [other], tmp_path / "y", init_from=tmp_path / "base", config=quick())
    with pytest.raises(LmlabError, match="--freeze takes 1 to 2 blocks"):
        train("gpt", [other], tmp_path / "z", init_from=tmp_path / "base", freeze=3,
              config=quick())  # fmt: skip


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
def test_bfloat16_autocast_trains_float32_weights_to_nearly_the_float32_loss(
    kind, corpus, tmp_path
):
    options = {**TINY, "n_embd": 32} if kind == "gpt" else {"n_embd": 32, "context": 16}
    results = {}
    for dtype in ("float32", "bfloat16"):
        config = quick(steps=60, lr=3e-3, dtype=dtype)
        results[dtype] = train(kind, [corpus], tmp_path / dtype, model_options=options,
                               config=config, progress=False)  # fmt: skip
    assert all(w.dtype == torch.float32 for w in weights(tmp_path / "bfloat16").values())
    a, b = results["float32"].train_loss, results["bfloat16"].train_loss
    assert a != b  # the products really ran in bfloat16
    assert b < math.log(30) - 0.3 and abs(a - b) < 0.05 * a  # it learns as float32 does


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_only_where_the_cpu_has_it(native, corpus, tmp_path, monkeypatch):
    from lmlab.training import devices

    monkeypatch.setattr(devices, "cpu_has_bfloat16", lambda: native)
    train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(steps=2),
          progress=False)  # fmt: skip
    recorded = json.loads((tmp_path / "r" / "lmlab.json").read_text())["train"]["dtype"]
    assert recorded == ("bfloat16" if native else "float32")
    assert all(w.dtype == torch.float32 for w in weights(tmp_path / "r").values())


def test_unknown_dtype_is_a_clear_error(corpus, tmp_path):
    with pytest.raises(LmlabError, match="--dtype must be auto, float32 or bfloat16"):
        train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(dtype="fp8"))


def test_sgd_trains_and_its_weight_decay_defaults_to_none(corpus, tmp_path):
    from lmlab.lm.neural.run import build_model, make_config
    from lmlab.training import optimizer_for

    model = build_model("lstm", make_config("lstm", vocab_size=30, n_embd=16))
    sgd, adam = optimizer_for(model, TrainConfig(optimizer="sgd")), optimizer_for(model, quick())
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adam, torch.optim.AdamW)
    assert [g["weight_decay"] for g in sgd.param_groups] == [0.0, 0.0]
    assert [g["weight_decay"] for g in adam.param_groups] == [0.1, 0.0]
    result = train("lstm", [corpus], tmp_path / "r", model_options={"n_embd": 32, "context": 16},
                   config=quick(steps=60, optimizer="sgd", lr=5.0, grad_clip=0.25),
                   progress=False)  # fmt: skip
    assert result.train_loss < math.log(30) - 0.3
    with pytest.raises(LmlabError, match="--optimizer must be adamw or sgd"):
        train("gpt", [corpus], tmp_path / "x", model_options=TINY, config=quick(optimizer="adam"))


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"model_options": {**TINY, "n_layer": 2}}, "layers (n_layer)"),
        ({"model_options": {**TINY, "n_embd": 32}}, "dim (n_embd)"),
        ({"model_options": {**TINY, "context": 8}}, "context (context)"),
        ({"model_options": {**TINY, "dropout": 0.2}}, "dropout (dropout)"),
        ({"model_options": {**TINY, "positions": "learned"}}, "positions (positions)"),
        ({"model_options": {}, "preset": "tiny"}, "context (context), dim (n_embd)"),
    ],
)
def test_resume_with_other_model_options_is_refused(corpus, tmp_path, changed, named):
    train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(steps=2),
          progress=False)  # fmt: skip
    before = (tmp_path / "r" / "lmlab.json").read_text()
    with pytest.raises(LmlabError, match=re.escape(f"these differ: {named}")):
        train("gpt", [corpus], tmp_path / "r", config=quick(steps=2), resume=True, **changed)
    assert (tmp_path / "r" / "lmlab.json").read_text() == before
    # the same options still resume (a finished run: nothing to do)
    again = train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(steps=2),
                  resume=True, progress=False)  # fmt: skip
    assert again.already_complete


def test_fine_tuning_refuses_what_the_source_run_fixes(corpus, tmp_path):
    train("gpt", [corpus], tmp_path / "base", model_options=TINY, config=quick(steps=2),
          progress=False)  # fmt: skip
    for option in ({"tokenizer": "word"}, {"vocab_size": 50}, {"preset": "tiny"}):
        name = "--" + next(iter(option)).replace("_", "-")
        with pytest.raises(LmlabError, match=f"uses that run's tokenizer and shape; .*{name}"):
            train("gpt", [corpus], tmp_path / "x", init_from=tmp_path / "base", config=quick(),
                  **option)  # fmt: skip
        assert not (tmp_path / "x").exists()
    train("gpt", [corpus], tmp_path / "tuned", init_from=tmp_path / "base", config=quick(steps=2),
          progress=False)  # fmt: skip
    recorded = json.loads((tmp_path / "tuned" / "lmlab.json").read_text())["train"]
    assert recorded["tokenizer"] == str(tmp_path / "base")  # the tokenizer it really used
    assert recorded["vocab_size"] is None


@pytest.mark.parametrize("device", ["cuda", "mps", "cuda:7"])
def test_a_device_this_machine_lacks_is_a_clear_error(corpus, tmp_path, device):
    from lmlab.training import pick_device

    try:
        torch.empty(0, device=device)
        pytest.skip(f"{device} exists here")
    except (RuntimeError, AssertionError):
        pass
    with pytest.raises(LmlabError, match=f"device '{device}' is not available here"):
        pick_device(device)
    with pytest.raises(LmlabError, match="not available here"):
        train("gpt", [corpus], tmp_path / "r", model_options=TINY, config=quick(device=device))
    assert not (tmp_path / "r").exists()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from lmlab.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('dim = "abc"', "dim in c.toml must be an integer, got 'abc'"),
        ('steps = "ten"', "steps in c.toml must be an integer, got 'ten'"),
        ('lr = "fast"', "lr in c.toml must be a number, got 'fast'"),
        ("layers = 1.5", "layers in c.toml must be an integer, got 1.5"),
        ("tokenizer = 5", "tokenizer in c.toml must be a string, got 5"),
        ("steps = 2.7", "steps in c.toml must be an integer, got 2.7"),
        ("batch-size = 2.5", "batch-size in c.toml must be an integer, got 2.5"),
        ("seed = true", "seed in c.toml must be an integer, got True"),
        ("nsp = 1", "nsp in c.toml must be true or false, got 1"),
        ("steps = 0", "--steps must be at least 1"),  # the command line's ranges
        ("dim = -3", "gpt: --dim (n_embd) must be at least 1, got -3"),
        ("device = 'tpu'", "unknown device 'tpu'"),
    ],
)
def test_config_file_values_are_checked_as_the_options(corpus, tmp_path, capsys, monkeypatch,
                                                       line, message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(f"{line}\ncontext = 8\n")
    code, _, err = run_cli(capsys, "train", "gpt", str(corpus), "--out", "r", "--config",
                           "c.toml", "--no-progress")  # fmt: skip
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing written


def test_config_file_values_of_the_right_type_are_used(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(
        "layers = 1\nheads = 2\ndim = 16\ncontext = 8\nsteps = 2\nbatch-size = 2\nlr = 1\n"
        'valid-fraction = 0.2\ntokenizer = "char"\ndevice = "cpu"\n'
    )
    code, out, err = run_cli(capsys, "train", "gpt", str(corpus), "--out", "r", "--config",
                             "c.toml", "--no-progress", "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["steps"] == 2
    run = json.loads((tmp_path / "r" / "lmlab.json").read_text())
    assert run["model"]["n_embd"] == 16 and run["train"]["lr"] == 1 and run["train"]["steps"] == 2
