"""The encoder-decoder Transformer: shapes, the causal mask, source padding, cross-attention,
the KV cache, shared or separate vocabularies and weight tying."""

import pytest
import torch

from lmlab.lm.neural.transformer import PRESETS, Transformer, TransformerConfig

V = 40


def tiny(**kw) -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=V, context=32, n_encoder_layer=2, n_decoder_layer=2,
                               n_head=2, n_embd=16, dropout=0.0, **kw)  # fmt: skip
    return Transformer(config).eval()


def ids(*shape, seed=1, high=V):
    return torch.randint(high, shape, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_the_default_shape():
    model = tiny()
    with torch.no_grad():
        memory = model.encode(ids(3, 9))
        logits = model(ids(3, 9), None, ids(3, 5, seed=2))
    assert memory.shape == (3, 9, 16)
    assert logits.shape == (3, 5, V)
    default = TransformerConfig()  # the reference shape
    assert (default.n_encoder_layer, default.n_decoder_layer, default.n_embd) == (3, 3, 256)
    assert default.n_head == 4
    full = Transformer(TransformerConfig(vocab_size=100, **PRESETS["base-cpu"]))
    assert full.encoder[0].mlp.fc.out_features == 1024  # FFN 1024


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_changing_a_later_target_token_changes_no_earlier_logit(positions):
    model = tiny(positions=positions)
    src, tgt = ids(2, 10), ids(2, 12, seed=2)
    changed = tgt.clone()
    changed[:, 7] = (changed[:, 7] + 1) % V
    with torch.no_grad():
        a, b = model(src, None, tgt), model(src, None, changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_the_decoder_reads_the_source_in_both_directions():
    model = tiny()
    src, tgt = ids(2, 10), ids(2, 6, seed=2)
    changed = src.clone()
    changed[:, -1] = (changed[:, -1] + 1) % V  # the last source token: every target position
    with torch.no_grad():
        a, b = model(src, None, tgt), model(changed, None, tgt)
    assert not torch.allclose(a[:, 0], b[:, 0])


def test_source_padding_changes_nothing():
    model = tiny()
    short, tgt = ids(1, 6), ids(1, 8, seed=2)
    padded = torch.cat([short, ids(1, 5, seed=3)], dim=1)  # any ids in the padding
    keep = torch.tensor([[1] * 6 + [0] * 5])
    with torch.no_grad():
        alone = model(short, None, tgt)
        in_batch = model(padded, keep, tgt)
        # and beside a longer source in one batch
        batch = torch.cat([padded, ids(1, 11, seed=4)])
        keep2 = torch.cat([keep, torch.ones(1, 11, dtype=torch.long)])
        together = model(batch, keep2, torch.cat([tgt, tgt]))
    torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the mask matters: without it the padding is read
        unmasked = model(padded, None, tgt)
    assert not torch.allclose(unmasked, alone, atol=1e-4)


def test_incremental_decoding_with_the_cache_equals_the_full_forward():
    model = tiny()
    src = ids(3, 9)
    keep = torch.ones(3, 9, dtype=torch.long)
    keep[0, 6:] = 0
    keep[2, 4:] = 0
    tgt = ids(3, 14, seed=2)
    with torch.no_grad():
        full = model(src, keep, tgt)
        cache = model.new_cache(model.encode(src, keep), keep)
        pieces = [model.decode(tgt[:, :5], cache=cache)]  # a chunk, then token by token
        pieces += [model.decode(tgt[:, t : t + 1], cache=cache) for t in range(5, 14)]
        assert cache.length == 14
        last = model.decode(tgt[:, :3], model.encode(src, keep), keep, last_only=True)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last[:, 0], full[:, 2], atol=1e-5, rtol=1e-5)


def test_cross_attention_keys_are_computed_once_per_source(monkeypatch):
    model = tiny()
    src = ids(2, 7)
    with torch.no_grad():
        cache = model.new_cache(model.encode(src))
        calls = []
        for block in model.decoder:
            original = block.cross.keys_values
            monkeypatch.setattr(block.cross, "keys_values", lambda m, o=original: calls.append(1))
        for t in range(4):
            model.decode(ids(2, 1, seed=t), cache=cache)
    assert calls == []


def test_vocabularies_shared_or_separate_and_tied_output():
    shared = tiny()
    assert shared.src_wte is shared.wte
    assert shared.lm_head.weight is shared.wte.weight
    separate = tiny(src_vocab_size=70)
    assert separate.src_wte is not separate.wte
    assert separate.src_wte.num_embeddings == 70 and separate.lm_head.out_features == V
    with torch.no_grad():
        logits = separate(ids(2, 5, high=70), None, ids(2, 3, seed=2))
    assert logits.shape == (2, 3, V)
    names = {n for n, _ in shared.named_parameters()}
    assert "lm_head.weight" not in names  # one matrix, counted once
    untied = tiny(tie_weights=False)
    assert untied.lm_head.weight is not untied.wte.weight


def test_positions_beyond_the_context_are_an_error():
    model = tiny()
    with pytest.raises(ValueError, match="exceed the context of 32"):
        model.encode(ids(1, 33))
    cache = model.new_cache(model.encode(ids(1, 4)))
    model.decode(ids(1, 30), cache=cache)
    with pytest.raises(ValueError, match="exceed the context"):
        model.decode(ids(1, 3), cache=cache)


def test_bfloat16_autocast_runs_and_stays_close():
    model = tiny()
    src, tgt = ids(2, 8), ids(2, 6, seed=2)
    with torch.no_grad():
        exact = model(src, None, tgt)
        with torch.autocast("cpu", torch.bfloat16):
            cache = model.new_cache(model.encode(src))
            steps = [model.decode(tgt[:, t : t + 1], cache=cache) for t in range(6)]
    assert (torch.cat(steps, 1).float() - exact).abs().max() < 0.1
