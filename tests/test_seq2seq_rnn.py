"""The recurrent encoder-decoder keeps the Transformer's promises: a padded source reads as
the same sentence alone, decoding through the cache (and after beam search's reorder) gives
the teacher-forced logits, and the attention weights are a distribution over the kept source
positions; the Transformer's cross_attention is the weights its attention applies."""

import pytest
import torch

from lmlab.errors import LmlabError
from lmlab.lm.neural.seq2seq_rnn import PRESETS, Seq2SeqRNN, Seq2SeqRNNConfig
from lmlab.lm.neural.transformer import PRESETS as TRANSFORMER_PRESETS
from lmlab.lm.neural.transformer import Transformer, TransformerConfig


def batch():
    torch.manual_seed(1)
    src, tgt = torch.randint(50, (3, 7)), torch.randint(50, (3, 6))
    keep = torch.ones(3, 7, dtype=torch.long)
    keep[1, 5:], keep[2, 3:] = 0, 0
    return src, keep, tgt


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong", "luong-dot"])
@pytest.mark.parametrize("cell,bidirectional", [("gru", True), ("lstm", False)])
def test_padding_cache_and_reorder_give_the_teacher_forced_logits(attention, cell, bidirectional):
    torch.manual_seed(0)
    config = Seq2SeqRNNConfig(vocab_size=50, cell=cell, attention=attention, n_layer=2,
                              bidirectional=bidirectional, **PRESETS["tiny"])  # fmt: skip
    model = Seq2SeqRNN(config).eval()
    src, keep, tgt = batch()
    full = model(src, keep, tgt)
    alone = model(src[2:3, :3], None, tgt[2:3])  # row 2 without its padding
    torch.testing.assert_close(full[2], alone[0], atol=1e-5, rtol=1e-5)
    memory = model.encode(src, keep)
    cache = model.new_cache(memory, keep)
    first, rest = model.decode(tgt[:, :2], cache=cache), model.decode(tgt[:, 2:], cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 6
    cache = model.new_cache(memory, keep)
    model.decode(tgt[:, :2], cache=cache)
    rows = torch.tensor([2, 0, 0])  # beam search keeps row 2 once and row 0 twice
    cache.reorder(rows)
    last = model.decode(tgt[rows, 2:], cache=cache, last_only=True)
    torch.testing.assert_close(last, full[rows, -1:], atol=1e-5, rtol=1e-5)
    if attention == "none":
        with pytest.raises(LmlabError, match="no attention"):
            model.cross_attention(src, keep, tgt)
    else:
        weights = model.cross_attention(src, keep, tgt)
        assert weights.shape == (3, 6, 7)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
        assert weights[2, :, 3:].abs().max() == 0 and weights[1, :, 5:].abs().max() == 0


def test_the_transformers_cross_attention_is_what_its_last_layer_applies():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=50, **TRANSFORMER_PRESETS["tiny"])).eval()
    src, keep, tgt = batch()
    weights = model.cross_attention(src, keep, tgt)
    assert weights.shape == (3, 6, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
    assert weights[2, :, 3:].abs().max() == 0
    seen = {}
    block = model.decoder[-1]
    block.cross.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        model(src, keep, tgt)
        memory = model.encode(src, keep)
        per_head = block.cross.weights(seen["x"], block.cross.keys_values(memory), keep.bool())
        _, v = block.cross.keys_values(memory)
        B, T, C = seen["x"].shape
        mixed = (per_head @ v.float()).transpose(1, 2).reshape(B, T, C)
        torch.testing.assert_close(block.cross.proj(mixed), seen["out"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(per_head.mean(1), weights)
