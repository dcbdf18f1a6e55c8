"""Post-training (SFT, DPO, reward models): the assistant-only mask token by token, the losses
against their definitions, bad input, and tiny runs that train and load everywhere."""

import json
import math

import pytest
import torch
from posttrain_models import chat_folder, no_chat_model, tiny_chat_lm
from test_cli import lmlab as lmlab_cli

import lmlab
from lmlab.errors import LmlabError
from lmlab.posttrain import data as D
from lmlab.text.hf_tokenizer import HFTokenizer
from lmlab.training.results import TrainConfig

pytestmark = pytest.mark.skipif(no_chat_model, reason="no bundled chat model")

CHATS = [
    {"messages": [{"role": "system", "content": "Answer in one word."},
                  {"role": "user", "content": "Is the sky blue?"},
                  {"role": "assistant", "content": "Yes."}]},
    {"messages": [{"role": "user", "content": "Capital of France?"},
                  {"role": "assistant", "content": "Paris."},
                  {"role": "user", "content": "And of Spain?"},
                  {"role": "assistant", "content": "Madrid."}]},
    {"prompt": "Say hi.", "completion": "Hi!"},
    {"prompt": "Two plus two?", "completion": "Four."},
] * 3  # fmt: skip
PREFS = [
    {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A chair."},
    {"prompt": [{"role": "user", "content": "Name a colour."}],
     "chosen": [{"role": "assistant", "content": "Blue."}],
     "rejected": [{"role": "assistant", "content": "Seven."}]},
    {"prompt": "Name an animal.", "chosen": "A cat.", "rejected": "A spoon."},
    {"prompt": "Name a city.", "chosen": "Paris.", "rejected": "Purple."},
] * 3  # fmt: skip
FAST = dict(batch_size=2, warmup=0, log_every=1, eval_every=2, device="cpu", dtype="float32",
            seed=0)  # fmt: skip


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return HFTokenizer(chat_folder())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_chat_lm(tmp_path_factory.mktemp("tiny") / "model")


def test_the_mask_covers_the_assistant_tokens_only(tokenizer, tmp_path):
    conv = D.chat_rows(jsonl(tmp_path / "c.jsonl", [CHATS[1]]))[0]
    enc = D.encode_conversation(tokenizer, conv)
    # The ids are those of the whole rendered conversation: cutting at turns changed nothing.
    rendered = tokenizer.render_chat(conv.messages, add_generation_prompt=False)
    assert enc.ids == tokenizer.encode(rendered)
    learned = [tokenizer.decode([i], skip_special_tokens=False)
               for i, m in zip(enc.ids, enc.mask, strict=True) if m]  # fmt: skip
    assert learned == ["Paris", ".", "<|im_end|>", "\n", "Mad", "rid", ".", "<|im_end|>", "\n"]
    # Token by token: a token is learned exactly when its characters lie inside an answer and
    # its end-of-turn; the system and user turns and "<|im_start|>assistant\n" are not.
    spans = [(rendered.index(a), rendered.index(a) + len(a))
             for a in ("Paris.<|im_end|>\n", "Madrid.<|im_end|>\n")]  # fmt: skip
    expected, start = [], 0
    for i in enc.ids:
        end = start + len(tokenizer.decode([i], skip_special_tokens=False))
        expected.append(any(s <= start and end <= e for s, e in spans))
        start = end
    assert start == len(rendered)
    assert enc.mask == expected
    assert sum(enc.mask) == 9 and not any(enc.mask[: enc.ids.index(tokenizer.encode("Paris")[0])])


def test_prompt_completion_and_weight_zero(tokenizer, tmp_path):
    rows = [CHATS[2], {"messages": [{"role": "user", "content": "a"},
                                    {"role": "assistant", "content": "b", "weight": 0},
                                    {"role": "user", "content": "c"},
                                    {"role": "assistant", "content": "d"}]}]  # fmt: skip
    plain, weighted = D.chat_rows(jsonl(tmp_path / "c.jsonl", rows))
    enc = D.encode_conversation(tokenizer, plain)
    assert tokenizer.decode([i for i, m in zip(enc.ids, enc.mask, strict=True) if m],
                            skip_special_tokens=False) == "Hi!<|im_end|>\n"  # fmt: skip
    enc = D.encode_conversation(tokenizer, weighted)
    assert tokenizer.decode([i for i, m in zip(enc.ids, enc.mask, strict=True) if m],
                            skip_special_tokens=False) == "d<|im_end|>\n"  # fmt: skip


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "line 2: no assistant message"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "line 2: message 1 has the unknown "
         "role 'robot'"),
        ({"text": "hi"}, "line 2: expected"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "starts with an assistant"),
    ],
)  # fmt: skip
def test_bad_chat_rows_name_their_line(row, message, tmp_path):
    path = jsonl(tmp_path / "c.jsonl", [CHATS[0], row])
    with pytest.raises(LmlabError, match=message):
        D.chat_rows(path)


def test_bad_preference_rows_and_the_cli_writes_nothing(tmp_path):
    same = {"prompt": "p", "chosen": "same", "rejected": "same"}
    path = jsonl(tmp_path / "p.jsonl", [PREFS[0], same])
    with pytest.raises(LmlabError, match="line 2: chosen and rejected are the same answer"):
        D.preference_rows(path)
    done = lmlab_cli("train", "dpo", str(path), "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "line 2" in done.stderr
    assert not (tmp_path / "run").exists()
    jsonl(tmp_path / "q.jsonl", [{"prompt": "p", "chosen": "a"}])
    with pytest.raises(LmlabError, match="line 1: needs prompt, chosen and rejected"):
        D.preference_rows(tmp_path / "q.jsonl")


def test_a_base_that_is_not_a_causal_lm_is_refused(tmp_path):
    from lmlab.posttrain.model import load_base

    folder = tmp_path / "encoder"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(LmlabError, match="not a causal language model"):
        load_base(folder)
    data = jsonl(tmp_path / "c.jsonl", CHATS)
    done = lmlab_cli("train", "sft", str(data), "--base", str(folder), "--out",
                     str(tmp_path / "run"))  # fmt: skip
    assert done.returncode == 2 and "not a causal language model" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_sft_loss_is_the_cross_entropy_of_the_assistant_tokens(tiny, tokenizer, tmp_path):
    from lmlab.posttrain.model import load_base, token_logps
    from lmlab.training.objectives.sft import pad

    lm = load_base(tiny)
    rows = [D.encode_conversation(tokenizer, c)
            for c in D.chat_rows(jsonl(tmp_path / "c.jsonl", CHATS[:4]))]  # fmt: skip
    ids, attention, mask = pad(rows, 2, torch.device("cpu"))
    ours = -token_logps(lm.model, ids, attention, mask).mean()
    logits = lm.model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    targets = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
    reference = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert ours.item() == pytest.approx(reference.item(), abs=1e-5)
    # Padding changes nothing: the last row alone has the same log-probabilities.
    alone = token_logps(lm.model, *pad(rows[3:], 2, torch.device("cpu")))
    assert torch.allclose(alone, token_logps(lm.model, ids, attention, mask)[-len(alone) :],
                          atol=1e-5)  # fmt: skip


def test_length_batches_group_similar_lengths_and_cover_every_row():
    from lmlab.training.objectives.sft import LengthBatches

    lengths = [5, 50, 6, 51, 7, 52, 8, 53]
    batches = LengthBatches(lengths, 2, seed=0)
    epoch = [batches.next() for _ in range(4)]
    assert sorted(i for b in epoch for i in b) == list(range(8))
    assert all(abs(lengths[a] - lengths[b]) <= 1 for a, b in epoch)


def test_sft_cli_trains_and_the_run_loads_everywhere(tiny, tmp_path):
    data = jsonl(tmp_path / "c.jsonl", CHATS)
    run = tmp_path / "sft"
    done = lmlab_cli("train", "sft", str(data), "--base", str(tiny), "--out", str(run),
                     "--steps", "8", "--batch-size", "4", "--lr", "2e-2", "--warmup", "0",
                     "--eval-every", "4", "--seed", "0", "--device", "cpu", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in history if "loss" in r]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert result["valid_loss"] is not None  # 12 rows: 1 held out
    assert json.loads((run / "lmlab.json").read_text())["train"]["valid_rows"] == 1
    tuned = lmlab.load_lm(run)
    assert lmlab.chat(tuned, [{"role": "user", "content": "hi"}], max_tokens=3).text is not None
    assert lmlab_cli("generate", "--model", str(run), "--max-tokens", "3", "hi").returncode == 0
    assert lmlab_cli("chat", "--model", str(run), "--max-tokens", "3", "hi").returncode == 0
    assert lmlab_cli("score", "--model", str(run), "Paris.").returncode == 0
    from fastapi.testclient import TestClient

    from lmlab.serve.app import ServerConfig, create_app

    with TestClient(create_app(ServerConfig(chat_models=[str(run)]))) as client:
        reply = client.post("/v1/chat/completions", json={
            "model": run.name, "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] is not None
    # A tuned run is a base for the next one (SFT then DPO), its adapters merged.
    from lmlab.posttrain.model import load_base
    from lmlab.posttrain.train import train_dpo

    prefs = jsonl(tmp_path / "p.jsonl", PREFS)
    train_dpo(prefs, tmp_path / "dpo", base=run, valid_fraction=None,
              config=TrainConfig(steps=1, lr=1e-2, **FAST), progress=False)  # fmt: skip
    dpo = lmlab.load_lm(tmp_path / "dpo")
    assert json.loads((tmp_path / "dpo" / "lmlab.json").read_text())["base"] == str(run.resolve())
    assert lmlab.generate(dpo, "Paris", max_tokens=2).text is not None

    merged = load_base(run)
    ids = torch.tensor([tuned.tokenizer.encode("Paris is")])
    assert torch.allclose(merged.model(input_ids=ids).logits,
                          tuned.model.float()(input_ids=ids).logits, atol=1e-4)  # fmt: skip


def test_full_sft_writes_the_whole_model_and_loads(tiny, tmp_path):
    from lmlab.posttrain.train import train_sft

    data = jsonl(tmp_path / "c.jsonl", CHATS)
    train_sft(data, tmp_path / "full", base=tiny, lora=False,
              config=TrainConfig(steps=2, lr=1e-2, **FAST), progress=False)  # fmt: skip
    assert (tmp_path / "full" / "model.safetensors").is_file()
    tuned, base = lmlab.load_lm(tmp_path / "full"), lmlab.load_lm(tiny)
    ids = torch.tensor([tuned.tokenizer.encode("Paris")])
    assert not torch.allclose(tuned.model(input_ids=ids).logits, base.model(input_ids=ids).logits)


def test_rows_longer_than_max_length_are_dropped_and_counted(tiny, tmp_path):
    from lmlab.posttrain.train import DroppedRowsWarning, train_sft

    long = {"prompt": "word " * 300, "completion": "ok"}
    data = jsonl(tmp_path / "c.jsonl", [*CHATS, long])
    dropped = "1 row was longer than 64 tokens and dropped .line 13."
    with pytest.warns(DroppedRowsWarning, match=dropped):
        train_sft(data, tmp_path / "run", base=tiny, max_length=64, valid_fraction=None,
                  config=TrainConfig(steps=1, lr=1e-3, **FAST), progress=False)  # fmt: skip
    assert json.loads((tmp_path / "run" / "lmlab.json").read_text())["train"]["dropped"] == 1
    with (
        pytest.raises(LmlabError, match="no training row fits in 8 tokens"),
        pytest.warns(DroppedRowsWarning),
    ):
        train_sft(data, tmp_path / "none", base=tiny, max_length=8,
                  config=TrainConfig(steps=1, **FAST), progress=False)  # fmt: skip
    assert not (tmp_path / "none").exists()


def test_dpo_starts_at_log_2_against_the_base_and_learns_the_preferences(tiny, tmp_path):
    from lmlab.posttrain.train import train_dpo

    data = jsonl(tmp_path / "p.jsonl", PREFS)
    valid = jsonl(tmp_path / "v.jsonl", PREFS[:4])
    result = train_dpo(data, tmp_path / "dpo", base=tiny, beta=0.1, valid=valid,
                       config=TrainConfig(steps=12, lr=3e-2, **FAST), progress=False)  # fmt: skip
    history = result.history
    first = history[0]
    # The adapters start at zero (B = 0): the policy is the reference, every reward 0.
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards_chosen"] == 0 and first["accuracy"] == 0
    final = next(r for r in history if r.get("final"))
    assert final["valid_accuracy"] == 1.0 and final["valid_reward_margin"] > 0
    assert final["valid_loss"] < math.log(2)
    trained = [r for r in history if "loss" in r and "valid_loss" not in r][-1]
    assert {"rewards_chosen", "rewards_rejected", "reward_margin", "accuracy"} <= set(trained)
    # The logged reward is beta * (log pi - log pi_ref), the reference being the base model.
    from lmlab.posttrain.model import load_base, row_sums, token_logps
    from lmlab.training.objectives.sft import pad

    tuned, base = lmlab.load_lm(tmp_path / "dpo", dtype="float32"), load_base(tiny)
    tok = base.tokenizer
    pair = [D.encode_answer(tok, [{"role": "user", "content": "Name a fruit."}], a)
            for a in ("An apple.", "A chair.")]  # fmt: skip
    tensors = pad(pair, 2, torch.device("cpu"))
    with torch.no_grad():
        margin = 0.1 * (row_sums(token_logps(tuned.model, *tensors), tensors[2])
                        - row_sums(token_logps(base.model, *tensors), tensors[2]))  # fmt: skip
    assert margin[0] > margin[1]


def test_reward_model_ranks_and_best_of_picks_by_it(tiny, tmp_path):
    from lmlab.posttrain.reward import load_reward
    from lmlab.posttrain.train import train_reward

    data = jsonl(tmp_path / "p.jsonl", PREFS)
    config = TrainConfig(steps=40, lr=1e-2, **FAST)
    result = train_reward(data, tmp_path / "rm", base=tiny, valid_fraction=None, config=config,
                          progress=False)  # fmt: skip
    losses = [r["loss"] for r in result.history if "loss" in r]
    assert losses[0] == pytest.approx(math.log(2), abs=0.05)
    assert sum(losses[-5:]) / 5 < 0.5
    scorer = load_reward(tmp_path / "rm")
    for p in PREFS[:4]:
        answers = [p[k] if isinstance(p[k], str) else p[k][0]["content"]
                   for k in ("chosen", "rejected")]  # fmt: skip
        good, bad = scorer.score(p["prompt"], answers)
        assert good > bad
    with pytest.raises(LmlabError, match="is a reward model"):
        lmlab.load_lm(tmp_path / "rm")
    # Best of N by the reward model: every sample scored, the best printed first.
    done = lmlab_cli("generate", "--model", str(tiny), "--best-of", "3", "--reward",
                     str(tmp_path / "rm"), "--max-tokens", "4", "--seed", "1", "--json",
                     "Name a fruit.")  # fmt: skip
    assert done.returncode == 0, done.stderr
    samples = json.loads(done.stdout)["samples"]
    assert len(samples) == 3 and samples[0]["reward"] == max(s["reward"] for s in samples)
    assert samples[0]["reward"] == pytest.approx(scorer.score("Name a fruit.",
                                                              [samples[0]["text"]])[0])  # fmt: skip
    done = lmlab_cli("generate", "--model", str(tiny), "--best-of", "3", "x")
    assert done.returncode == 2 and "go together" in done.stderr
