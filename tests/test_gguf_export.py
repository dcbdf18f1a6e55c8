"""`lmlab export`: a tuned model as a GGUF file that llama.cpp runs as the torch run does.

Fast: a two-layer Llama on the bundled vocabulary (grouped-query attention, untied output,
LoRA adapters with non-zero updates), exported and read back by llama.cpp, next-token
distributions compared with torch's. Slow: the bundled model with LoRA adapters as a run,
exported by the command line, its WikiText-2 perplexity within 1% (f16) and 2% (q8_0) of the
torch run's, greedy text the same.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from posttrain_models import chat_folder, no_chat_model

import lmlab
from lmlab.cli import main
from lmlab.errors import LmlabError
from lmlab.lm.gguf_export import _tokenizer_fields, export_gguf
from lmlab.models import BUNDLED, DEFAULT_LM, bundled_path

pytestmark = pytest.mark.skipif(no_chat_model, reason="no bundled chat model")
WIKITEXT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "wikitext-2"
SENTENCE = "The river bank was steep, and the old man walked slowly down to the water."


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def tiny_llama(folder: Path):
    """A 2-layer Llama (4 query heads sharing 2 key/value heads, untied output) on the bundled
    vocabulary, with LoRA adapters whose updates are not zero: a TransformersLM."""
    import shutil

    from transformers import LlamaConfig, LlamaForCausalLM

    from lmlab.lm.lora_lm import add_adapters
    from lmlab.lm.transformers_lm import TransformersLM

    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (chat_folder() / name).is_file():
            shutil.copyfile(chat_folder() / name, folder / name)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=False,
                         rope_theta=10000.0, initializer_range=0.2, bos_token_id=1,
                         eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    lm = TransformersLM(folder, dtype="float32")
    add_adapters(lm.model, 4, 8, 0.0).eval()
    with torch.no_grad():
        lm.model.lm_head.weight.mul_(4)  # peaked next-token distributions
        for name, p in lm.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return lm


def logprobs(lm, text: str) -> torch.Tensor:
    """log P(next token) at every position of `text`: (T, V)."""
    ids = lm.tokenizer.encode(text, add_special_tokens=True)
    state = lm.new_state(1)
    try:
        logits = lm.forward(state, torch.tensor([ids]), all_positions=True)[0]
    finally:
        lm.release(state)
    return logits.float().log_softmax(-1)


@pytest.fixture(scope="module")
def vocab_gguf():
    return bundled_path(BUNDLED[DEFAULT_LM])


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) at each position, of log-probabilities (T, V)."""
    return (p.exp() * (p - q)).sum(-1)


@pytest.mark.parametrize(("kind", "tolerance"), [("f16", 1e-3), ("q8_0", 0.2)])
def test_the_exported_file_predicts_what_the_torch_model_does(tmp_path, vocab_gguf, kind,
                                                               tolerance):  # fmt: skip
    from lmlab.posttrain.model import set_adapters

    lm = tiny_llama(tmp_path / "tiny")
    expected = logprobs(lm, SENTENCE)  # with the adapters on
    set_adapters(lm.model, False)
    assert kl(expected, logprobs(lm, SENTENCE)).max() > 1  # the adapters matter
    set_adapters(lm.model, True)
    result = export_gguf(lm, tmp_path / "tiny.gguf", type=kind, vocabulary=vocab_gguf)
    assert result.path.is_file() and result.architecture == "llama"
    assert result.tensors == 2 * 9 + 3  # 9 per layer; token_embd, output_norm, output
    exported = lmlab.load_lm(result.path, backend="llama")
    assert type(exported).__name__ == "LlamaCppLM"
    ids = exported.tokenizer.encode(SENTENCE, add_special_tokens=True)
    assert ids == lm.tokenizer.encode(SENTENCE, add_special_tokens=True)
    got = logprobs(exported, SENTENCE)
    # measured: f16 8.6e-5, q8_0 0.054; without the query/key row order, 33
    assert kl(expected, got).max() < tolerance
    if kind == "f16":
        assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_q8_0_quantizes_the_matrices_and_keeps_the_norms(tmp_path, vocab_gguf):
    from gguf import GGMLQuantizationType, GGUFReader

    lm = tiny_llama(tmp_path / "tiny")
    export_gguf(lm, tmp_path / "q.gguf", type="q8_0", vocabulary=vocab_gguf)
    reader = GGUFReader(tmp_path / "q.gguf")
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.attn_q.weight"] == GGMLQuantizationType.Q8_0
    assert types["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.1.ffn_norm.weight"] == GGMLQuantizationType.F32
    fields = reader.fields
    assert fields["llama.attention.head_count_kv"].contents() == 2
    source = {key: value for key, value, *_ in _tokenizer_fields(vocab_gguf)}  # gguf's reader
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.chat_template"):
        assert fields[key].contents() == source[key]


def test_a_failed_export_leaves_nothing(tmp_path, vocab_gguf, monkeypatch):
    import gguf.quants

    lm = tiny_llama(tmp_path / "tiny")
    out = tmp_path / "out"
    out.mkdir()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf.quants, "quantize", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_gguf(lm, out / "q.gguf", type="q8_0", vocabulary=vocab_gguf)
    assert os.listdir(out) == []


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20)
    lmlab.train("ngram", [corpus], tmp_path / "ngram", progress=False)
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "lmlab.json").write_text(json.dumps({"kind": "gpt"}))
    cases = {
        str(tmp_path / "ngram"): "'ngram' run, not a causal LM tuned from a pretrained one",
        "all-minilm-l6-v2": "not a causal language model",
        str(gpt): "GPT runs cannot be exported to GGUF exactly",
    }
    for model, message in cases.items():
        code, _, err = run(capsys, "export", model, "--out", str(tmp_path / "m.gguf"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "export", DEFAULT_LM, "--out", str(tmp_path / "m.gguf"),
                       "--type", "q4_0")  # fmt: skip
    assert code == 2 and "q4_0" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "export", DEFAULT_LM, "--out", str(tmp_path / "no" / "m.gguf"))
    assert code == 2 and "does not exist" in err
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt", "gpt", "ngram"]  # nothing written
    with pytest.raises(LmlabError, match="unknown type"):
        export_gguf(DEFAULT_LM, tmp_path / "m.gguf", type="q4_0")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A `lmlab train lora` run of the bundled model whose adapters change it measurably."""
    from safetensors.torch import save_file

    from lmlab.lm.lora_lm import _base_folder, add_adapters
    from lmlab.lm.transformers_lm import TransformersLM

    folder = tmp_path_factory.mktemp("export") / "run"
    folder.mkdir()
    lora = {"r": 8, "alpha": 16, "dropout": 0.05}
    lm = TransformersLM(_base_folder(DEFAULT_LM), dtype="float32")
    add_adapters(lm.model, lora["r"], lora["alpha"], lora["dropout"])
    torch.manual_seed(0)
    state = {}
    for name, p in lm.model.named_parameters():
        if "lora_" in name:
            state[name] = torch.randn_like(p) * (0.02 if "lora_B" in name else 0.1)
    save_file(state, str(folder / "adapter.safetensors"))
    run = {"kind": "lora-lm", "base": DEFAULT_LM, "lora": lora}
    (folder / "lmlab.json").write_text(json.dumps(run))
    return folder


TEXT_CHARS = 10000  # ~2,500 tokens of WikiText-2's test split
# in windows of 1,024 tokens, each token scored once (measured with the default overlapping
# windows: torch 19.286, f16 19.284, q8_0 19.391)
WINDOW = {"window": 1024, "stride": 1023}
PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):"]


@pytest.fixture(scope="module")
def torch_run(lora_run):
    """The torch run's perplexity and greedy tokens, and the text they are measured on."""
    if not WIKITEXT.is_dir():
        pytest.skip("needs ../shared/data/wikitext-2")
    text = (WIKITEXT / "test.txt").read_text()[:TEXT_CHARS]
    lm = lmlab.load_lm(lora_run, dtype="float32")
    tuned = lmlab.perplexity(lm, text, **WINDOW)
    base = lmlab.perplexity(DEFAULT_LM, text, backend="llama", **WINDOW)
    assert abs(tuned / base - 1) > 0.05  # the adapters matter: an export without them fails
    greedy = [lmlab.generate(lm, p, temperature=0, max_tokens=8, ignore_eos=True).token_ids
              for p in PROMPTS]  # fmt: skip
    return text, tuned, greedy


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "tolerance"), [("f16", 0.01), ("q8_0", 0.02)])
def test_the_exported_run_has_the_torch_runs_perplexity(lora_run, torch_run, kind, tolerance,
                                                         tmp_path, capsys):  # fmt: skip
    text, tuned, greedy = torch_run
    out = tmp_path / f"run.{kind}.gguf"
    code, _, err = run(capsys, "export", str(lora_run), "--out", str(out), "--type", kind)
    assert code == 0, err
    exported = lmlab.load_lm(out)  # the llama backend
    assert type(exported).__name__ == "LlamaCppLM"
    assert abs(lmlab.perplexity(exported, text, **WINDOW) / tuned - 1) < tolerance
    if kind == "f16":  # measured: the first 64 greedy tokens of a prompt all equal
        got = [lmlab.generate(exported, p, temperature=0, max_tokens=8, ignore_eos=True)
               for p in PROMPTS]  # fmt: skip
        assert [g.token_ids[:4] for g in got] == [ids[:4] for ids in greedy]
