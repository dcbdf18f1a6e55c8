"""Every objective through the one loop, on the same contract: two steps, Ctrl-C after the
first, resume, and the weights are those of a run never interrupted (same seed)."""

import json
import os
import signal

import numpy as np
import pytest
import torch
from posttrain_models import no_chat_model
from safetensors.torch import load_file

from lmlab.models import BUNDLED, DEFAULT_ENCODER, bundled_path
from lmlab.training import Loop, TrainConfig, TrainingInterrupted, train

TEXT = "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n" * 40
CONFIG = dict(steps=2, batch_size=4, warmup=1, eval_every=1, log_every=1, device="cpu",
              dtype="float32")  # fmt: skip
TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "context": 16, "dropout": 0.1}
GOOD = ["wonderful", "delightful", "brilliant", "superb", "great", "lovely", "moving", "fine"]
BAD = ["dreadful", "boring", "awful", "tedious", "terrible", "dull", "painful", "bad"]
REVIEWS = [f"the film is {w}" for w in GOOD + BAD] * 4
LABELS = np.array(([1] * len(GOOD) + [0] * len(BAD)) * 4)
no_encoder = bundled_path(BUNDLED[DEFAULT_ENCODER]) is None


def language_model(kind, **options):
    def run(corpus, out, resume):
        if kind == "bert" and not resume:  # one tokenizer for both runs (wordpiece training
            tokenizer = out.parent / "wordpiece"  # breaks ties differently from run to run)
            if not tokenizer.exists():
                from lmlab.text.tokenizer_training import train_tokenizer

                train_tokenizer([corpus], tokenizer, kind="wordpiece", vocab_size=60)
            options["tokenizer"] = tokenizer
        train(kind, [corpus], out, config=TrainConfig(**CONFIG), valid_fraction=0.2,
              progress=False, resume=resume, **options)  # fmt: skip

    return run


def tiny_causal_lm(folder):
    """A one-layer Llama with a byte-BPE tokenizer of the text: a pretrained LM in miniature."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmlab.text.hf_tokenizer import HFTokenizer
    from lmlab.text.tokenizer_training import train_tokenizer

    corpus = folder.parent / "base.txt"
    corpus.write_text(TEXT)
    train_tokenizer([corpus], folder, kind="byte-bpe", vocab_size=300)
    config = LlamaConfig(vocab_size=HFTokenizer(folder).vocab_size, hidden_size=16,
                         intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def lora_lm(corpus, out, resume):
    from lmlab.lm.lora_lm import train_lora

    base = out.parent / "base"
    if not base.exists():
        tiny_causal_lm(base)
    train_lora(base, [corpus], out, context=16, r=4, config=TrainConfig(**CONFIG),
               valid_fraction=0.2, resume=resume, progress=False)  # fmt: skip


def classifier(method_class, **options):
    def run(corpus, out, resume):
        method = method_class(**options)
        method.fit(REVIEWS, LABELS, ["negative", "positive"], progress=False, workdir=out,
                   resume=resume)  # fmt: skip

    return run


def finetune(corpus, out, resume):
    from lmlab.classify.finetune import FineTune

    classifier(FineTune, epochs=0.5, batch_size=16, max_length=12, seed=0)(corpus, out, resume)


def mlp_probe(corpus, out, resume):
    from lmlab.classify.probes import MLP

    # 64 texts: 6 held out, 58 in 2 batches of 32 (the last smaller): one epoch of 2 steps
    classifier(MLP, encoder="bow", hidden=8, epochs=1, batch_size=32, seed=0)(corpus, out, resume)


def seq2seq(arch, **model_options):
    def run(corpus, out, resume):
        from lmlab.training.seq2seq import train_seq2seq

        pairs = out.parent / "pairs.tsv"  # each review to its words in reverse order
        pairs.write_text(
            "en\tes\n" + "".join(f"{r}\t{' '.join(r.split()[::-1])}\n" for r in REVIEWS)
        )
        train_seq2seq(pairs, out, valid=pairs, source_col="en", target_col="es", vocab_size=300,
                      arch=arch, model_options={"n_embd": 16, "context": 16, "dropout": 0.1,
                                                **model_options},
                      label_smoothing=0.1, config=TrainConfig(**CONFIG), resume=resume,
                      progress=False)  # fmt: skip

    return run


def word2vec(corpus, out, resume):
    from lmlab.wordvec.train import train_word2vec

    # 560 words in blocks of 480: two steps, the second drawing its own windows and noise; one
    # worker (threads updating the same rows at once would make even two whole runs differ)
    train_word2vec(corpus, out, dim=8, min_count=1, epochs=1, batch_words=480, workers=1,
                   resume=resume, progress=False)  # fmt: skip


def simcse(corpus, out, resume):
    from pathlib import Path

    import lmlab
    from lmlab.contrastive.train import train_simcse

    bert = Path(lmlab.__file__).parent / "resources" / "bert-small"  # the bundled BERT
    train_simcse(corpus, out, encoder=bert, config=TrainConfig(**CONFIG), resume=resume,
                 progress=False)  # fmt: skip


def contrastive_cosent(corpus, out, resume):
    from lmlab.contrastive.train import train_contrastive

    pairs = out.parent / "scored.csv"  # each review with itself reversed, scored by its label
    pairs.write_text("".join(f"{r},{' '.join(r.split()[::-1])},{y}\n"
                             for r, y in zip(REVIEWS, LABELS, strict=True)))  # fmt: skip
    sts = out.parent / "sts.csv"  # validation: Spearman on a few of them
    sts.write_text(
        "".join(
            f"{r},{r.split()[-1]},{y}\n" for r, y in zip(REVIEWS[:12], LABELS[:12], strict=True)
        )
    )
    train_contrastive(pairs, out, valid=sts, config=TrainConfig(**CONFIG), resume=resume,
                      progress=False)  # fmt: skip


def clip(image_encoder, text):
    def run(corpus, out, resume):
        from lmlab.training.clip import clip_config, train_clip

        rng = np.random.default_rng(0)
        images = rng.integers(0, 255, (24, 12, 12)).astype(np.uint8)
        labels = [["good", "bad", "dull"][i % 3] for i in range(24)]
        encoder = text
        if text == "bow":  # a frozen bag of words: the text side without a transformer
            from lmlab.embed.sparse import BagOfWordsEncoder

            encoder = out.parent / "bow"
            if not encoder.exists():
                BagOfWordsEncoder.fit([*REVIEWS, "a photo of a dull"]).save(encoder)
        config = clip_config(**{**CONFIG, "batch_size": 8})
        train_clip(images, labels, out, labels=True, image_encoder=image_encoder,
                   text_encoder=str(encoder), freeze_text=text == "bow", preset="tiny",
                   image_options={"patch": 4} if image_encoder == "vit" else None,
                   valid_fraction=0.25, config=config, resume=resume,
                   progress=False)  # fmt: skip

    return run


CHATS = "".join(
    json.dumps({"messages": [{"role": "user", "content": f"{r}?"},
                             {"role": "assistant", "content": f"{w}."}]}) + "\n"
    for r, w in zip(REVIEWS[:16], GOOD + BAD, strict=True)
)  # fmt: skip
PAIRS = "".join(
    json.dumps({"prompt": "Describe the film.", "chosen": r, "rejected": f"it is {w}"}) + "\n"
    for r, w in zip(REVIEWS[:8], BAD, strict=True)
)


def post_training(kind):
    def run(corpus, out, resume):
        from lmlab.posttrain import train as post

        base = out.parent / "chat-base"
        if not base.exists():
            from posttrain_models import tiny_chat_lm

            tiny_chat_lm(base)
        data = out.parent / f"{kind}.jsonl"
        data.write_text(CHATS if kind == "sft" else PAIRS)
        train = {"sft": post.train_sft, "dpo": post.train_dpo, "reward": post.train_reward}[kind]
        train(data, out, base=base, valid_fraction=0.25, lora={"r": 4},
              config=TrainConfig(**CONFIG, lr=1e-2), resume=resume, progress=False)  # fmt: skip

    return run


OBJECTIVES = {
    "causal-gpt": language_model("gpt", model_options=TINY),
    "causal-lstm": language_model(
        "lstm", model_options={"n_embd": 16, "context": 8, "dropout": 0.1}
    ),
    "masked-bert-nsp": language_model("bert", model_options={**TINY, "nsp": True}),
    "lora-lm": lora_lm,
    "classify-finetune": pytest.param(
        finetune, marks=pytest.mark.skipif(no_encoder, reason="no bundled encoder")
    ),
    "classify-mlp-probe": mlp_probe,
    "seq2seq-transformer": seq2seq("transformer", n_encoder_layer=1, n_decoder_layer=1, n_head=2),
    "seq2seq-rnn-bahdanau": seq2seq("rnn", n_hidden=16, attention="bahdanau", cell="lstm"),
    "word2vec-skip-gram": word2vec,
    "contrastive-simcse": simcse,
    "contrastive-cosent-minilm": pytest.param(
        contrastive_cosent, marks=pytest.mark.skipif(no_encoder, reason="no bundled encoder")
    ),
    "clip-cnn-frozen-bow": clip("cnn", "bow"),
    "clip-vit-text-trains": pytest.param(
        clip("vit", DEFAULT_ENCODER),
        marks=pytest.mark.skipif(no_encoder, reason="no bundled encoder"),
    ),
    **{
        f"post-training-{kind}": pytest.param(
            post_training(kind),
            marks=pytest.mark.skipif(no_chat_model, reason="no bundled chat model"),
        )
        for kind in ("sft", "dpo", "reward")
    },
}


def ctrl_c_after_the_first_step(m):
    """A real SIGINT once step 1's bookkeeping is done (Python raises it right after)."""
    settle = Loop.settle

    def patched(self):
        settle(self)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    m.setattr(Loop, "settle", patched)


@pytest.mark.parametrize("run", OBJECTIVES.values(), ids=OBJECTIVES.keys())
def test_ctrl_c_then_resume_gives_the_uninterrupted_weights(run, tmp_path, monkeypatch):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    run(corpus, tmp_path / "whole", False)
    with monkeypatch.context() as m:
        ctrl_c_after_the_first_step(m)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 1"):
            run(corpus, tmp_path / "killed", False)
    stopped = torch.load(tmp_path / "killed" / "checkpoint" / "state.pt", weights_only=False)
    assert stopped["step"] == 1
    first = load_file(str(tmp_path / "killed" / "checkpoint" / "model.safetensors"))
    run(corpus, tmp_path / "killed", True)
    whole = load_file(str(tmp_path / "whole" / "checkpoint" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "killed" / "checkpoint" / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert any(not torch.equal(first[k], resumed[k]) for k in first)  # step 2 was trained
    assert torch.load(tmp_path / "killed" / "checkpoint" / "state.pt",
                      weights_only=False)["step"] == 2  # fmt: skip


def test_classify_fit_resumes_an_interrupted_fit_to_the_same_classifier(
    tmp_path, monkeypatch, capsys
):
    from lmlab.classify.classifier import TextClassifier
    from lmlab.cli import main

    data = tmp_path / "reviews.csv"
    data.write_text(
        "text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(REVIEWS, LABELS, strict=True))
    )
    command = ["classify", "fit", str(data), "--method", "mlp", "--encoder", "bow", "--epochs",
               "3", "--batch-size", "32", "--seed", "0"]  # fmt: skip

    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main([*command, *args])
        return e.value.code, capsys.readouterr()

    assert cli("--out", str(tmp_path / "whole"))[0] == 0
    with monkeypatch.context() as m:
        ctrl_c_after_the_first_step(m)
        code, out = cli("--out", str(tmp_path / "clf"))
    assert code == 130 and "run the same command with --resume" in out.err
    assert not (tmp_path / "clf").exists()
    code, out = cli("--out", str(tmp_path / "clf"), "--resume")
    assert code == 0, out.err
    assert not (tmp_path / ".clf.training").exists()  # gone once the classifier is saved
    assert (tmp_path / "clf" / "metrics.jsonl").is_file()
    a, b = (TextClassifier.load(tmp_path / name) for name in ("whole", "clf"))
    assert np.array_equal(a.predict_proba(REVIEWS), b.predict_proba(REVIEWS))
    assert a.method_.info == b.method_.info
    code, out = cli("--out", str(tmp_path / "again"), "--resume")
    assert code == 2 and "nothing to resume" in out.err
