"""The torch backend against transformers itself, on the same weights."""

import pytest
import torch

import lmlab
from lmlab.decode import render
from lmlab.evaluate import token_logprobs

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers_generate_token_for_token(torch_lm, prompt):
    ours = lmlab.generate(torch_lm, prompt, temperature=0, max_tokens=48)
    ids = torch.tensor([torch_lm.tokenizer.encode(prompt, add_special_tokens=True)])
    with torch.inference_mode():
        theirs = torch_lm.model.generate(ids, do_sample=False, max_new_tokens=48, pad_token_id=2)
    assert ours.token_ids == theirs[0, ids.shape[1] :].tolist()  # both end at end-of-text


def test_chat_greedy_equals_transformers_until_end_of_turn(torch_lm):
    messages = [
        {"role": "system", "content": "You are a terse geography tutor."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    ours = lmlab.chat(torch_lm, messages, temperature=0, max_tokens=60)
    ids = torch.tensor([render(torch_lm, messages)])
    with torch.inference_mode():
        theirs = torch_lm.model.generate(ids, do_sample=False, max_new_tokens=60, pad_token_id=2)
    assert ours.token_ids == theirs[0, ids.shape[1] :].tolist()[: len(ours.token_ids)]
    assert ours.finish_reason == "stop" and ours.token_ids[-1] == 2
    assert "Paris" in ours.text


def test_score_equals_transformers_mean_negative_log_likelihood(torch_lm):
    text = "The man bites the dog. The dog does not like it and runs away from the man."
    s = lmlab.score(torch_lm, text)
    ids = torch.tensor([torch_lm.tokenizer.encode(text, add_special_tokens=True)])
    with torch.inference_mode():
        loss = torch_lm.model(ids, labels=ids).loss.item()
    assert s.n_tokens == ids.shape[1] - 1
    assert s.nll == pytest.approx(loss, rel=2e-3)
    assert s.perplexity == pytest.approx(torch.exp(torch.tensor(loss)).item(), rel=2e-3)
    assert s.surprisal_bits[0] == pytest.approx(s.surprisal_nats[0] / 0.6931471805599453)


def test_sliding_window_scores_like_the_hugging_face_recipe(torch_lm):
    """Windows of 24 tokens advancing by 10, checked against HF's perplexity-guide loop."""
    text = "It was the best of times, it was the worst of times, it was the age of wisdom, " * 3
    ids = torch_lm.tokenizer.encode(text, add_special_tokens=True)
    ours = token_logprobs(torch_lm, ids, window=24, stride=10)
    assert len(ours) == len(ids) - 1
    total, prev_end = 0.0, 0
    with torch.inference_mode():
        for begin in range(0, len(ids), 10):
            end = min(begin + 24, len(ids))
            chunk = torch.tensor([ids[begin:end]])
            logp = torch_lm.model(chunk).logits.float()[0, :-1].log_softmax(-1)
            picked = logp.gather(1, chunk[0, 1:, None])[:, 0]
            new = end - max(prev_end, 1)  # tokens this window scores for the first time
            total += picked[-new:].sum().item()
            prev_end = end
            if end == len(ids):
                break
    assert sum(ours) == pytest.approx(total, rel=1e-3)
    full = token_logprobs(torch_lm, ids)
    assert sum(full) != pytest.approx(sum(ours), rel=1e-4)  # less context, another number


def test_gguf_conversion_is_cached_at_float16(torch_lm, gguf_path):
    from lmlab.lm.gguf_cache import cache_folder, converted_folder

    folder = cache_folder(gguf_path)
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert converted_folder(gguf_path) == folder
    assert weights.stat().st_mtime_ns == stamp  # not converted again
    assert torch_lm.dtype == torch.float16
