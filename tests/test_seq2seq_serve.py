"""`lmlab serve --model RUN` with a translation model: /v1/completions translates the prompt
and chat translates the last user message, as greedy translation by the library does (a tiny
random T5 folder, and a run trained here for one step)."""

import pytest
from fastapi.testclient import TestClient
from seq2seq_models import save_tiny_t5

from lmlab.seq2seq.model import load_seq2seq
from lmlab.serve.app import ServerConfig, create_app

SOURCE = "the big cat sees a red house"


def our_run(folder):
    from lmlab.training import TrainConfig
    from lmlab.training.seq2seq import train_seq2seq

    pairs = folder / "pairs.tsv"
    pairs.write_text("en\tes\n" + "the cat sees a dog\tel gato ve un perro\n" * 8)
    train_seq2seq(pairs, folder / "run", arch="rnn", preset="tiny", vocab_size=280,
                  config=TrainConfig(steps=1, batch_size=4, warmup=0, device="cpu",
                                     dtype="float32"), progress=False)  # fmt: skip
    return folder / "run"


@pytest.mark.parametrize("make", [save_tiny_t5, our_run], ids=["hf-t5", "rnn-run"])
def test_completions_and_chat_translate_the_source(make, tmp_path):
    folder = make(tmp_path)
    expected = load_seq2seq(folder).translate([SOURCE], max_tokens=6)[0]
    with TestClient(create_app(ServerConfig(chat_models=[str(folder)]))) as client:
        name = client.get("/v1/models").json()["data"][0]["id"]
        r = client.post("/v1/completions", json={"model": name, "prompt": SOURCE, "max_tokens": 6})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"].strip() == expected
        messages = [{"role": "system", "content": "Translate."},
                    {"role": "user", "content": "a dog"},
                    {"role": "assistant", "content": "un perro"},
                    {"role": "user", "content": SOURCE}]  # fmt: skip
        r = client.post("/v1/chat/completions",
                        json={"model": name, "messages": messages, "max_tokens": 6})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].strip() == expected
        r = client.post("/v1/chat/completions", json={"model": name, "max_tokens": 6,
                        "messages": [{"role": "system", "content": "Translate."}]})  # fmt: skip
        assert r.status_code == 400 and "needs a user message" in r.json()["error"]["message"]
