"""The GPT model: causal masking, the KV cache, weight tying, the LanguageModel interface."""

import pytest
import torch

import lmlab.lm.neural.attention as attention
from lmlab.lm.neural.gpt import GPT, GPTConfig, rotary_turns, rotate, sinusoidal_positions


def tiny(positions="learned", **kw) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=50, context=32, n_layer=2, n_head=2, n_embd=16, positions=positions, **kw
    )
    return GPT(config).eval()


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_changing_a_future_token_changes_no_earlier_logit(positions):
    model = tiny(positions)
    ids = torch.randint(50, (2, 20), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 12] = (changed[:, 12] + 1) % 50
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
def test_kv_cache_gives_the_full_forward_logits(positions):
    model = tiny(positions)
    ids = torch.randint(50, (3, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(3)
        # a prompt, then a chunk of several tokens after it, then one token at a time
        pieces = [model(ids[:, :7], cache), model(ids[:, 7:12], cache)]
        pieces += [model(ids[:, t : t + 1], cache) for t in range(12, 24)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 24


def test_last_only_is_the_last_row():
    model = tiny()
    ids = torch.randint(50, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, last_only=True)[:, 0], model(ids)[:, -1])


def test_weights_are_tied_and_the_context_is_enforced():
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    assert tiny(tie_weights=False).lm_head.weight is not tiny().wte.weight
    with pytest.raises(ValueError, match="exceed the context"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_sinusoidal_positions_follow_the_formula():
    table = sinusoidal_positions(10, 8)
    pos, i = 7, 2  # dimensions 2i and 2i+1 at wavelength 10000^(2i/d)
    angle = torch.tensor(pos / 10000 ** (2 * i / 8))
    torch.testing.assert_close(table[pos, 2 * i], torch.sin(angle))
    torch.testing.assert_close(table[pos, 2 * i + 1], torch.cos(angle))


def test_rotary_scores_depend_only_on_the_distance_between_tokens():
    """RoPE: q at position m against k at position n gives the same score for every m - n."""
    turns = rotary_turns(40, 8)
    q, k = torch.randn(8, generator=torch.Generator().manual_seed(3)), torch.randn(8)

    def score(m: int, n: int) -> torch.Tensor:
        turned_q = rotate(q.expand(1, 40, 8), turns)[0, m]
        return turned_q @ rotate(k.expand(1, 40, 8), turns)[0, n]

    torch.testing.assert_close(score(5, 2), score(33, 30))
    torch.testing.assert_close(score(9, 9), q @ k)  # no turn at distance 0
    assert not torch.allclose(score(5, 2), score(5, 4))
    # pair i = (x[2i], x[2i+1]) turns by p / 10000^(2i/D): pair 1 at position 7
    turned = rotate(torch.tensor([0.0, 0, 1, 0, 0, 0, 0, 0]).expand(1, 40, 8), turns)[0, 7]
    angle = torch.tensor(7 / 10000 ** (2 / 8))
    torch.testing.assert_close(turned[2:4], torch.stack([angle.cos(), angle.sin()]))


def test_rotary_model_has_no_position_table():
    model = tiny("rope")
    assert not hasattr(model, "wpe")
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in tiny().parameters())


def test_bfloat16_autocast_keeps_attention_in_float32(monkeypatch):
    """On a CPU, bfloat16 autocast runs the projections in bfloat16 but attention in float32."""
    seen = []
    real = attention.F.scaled_dot_product_attention

    def spy(q, k, v, **options):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return real(q, k, v, **options)

    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", spy)
    model = tiny()
    ids = torch.randint(50, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        exact = model(ids)
        with torch.autocast("cpu", torch.bfloat16):
            mixed = model(ids)
    assert seen[-2:] == [(torch.float32, False)] * 2  # both layers, autocast off inside
    assert mixed.dtype == torch.bfloat16  # the output layer still ran in bfloat16
    torch.testing.assert_close(mixed.float(), exact, atol=0.05, rtol=0.05)
