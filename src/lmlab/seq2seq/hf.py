"""A local Hugging Face encoder-decoder folder (T5, BART, Marian) as a lmlab Seq2Seq.

`load_seq2seq(folder)` loads it by `AutoModelForSeq2SeqLM`, and `HFEncoderDecoder` puts it
behind the interface of the encoder-decoders trained here (encode, new_cache with reorder,
decode, forward, cross_attention), so conditioning (`condition`), scoring and serving take it
as they take ours. `translate` goes through the model's own `generate` (greedy, or beam search
with `beam`), as a user of transformers would decode it.

Differences from our runs, all read from the folder: a source ends with the tokenizer's own
special tokens (T5 and BART add `</s>`), and a target starts from the model's
`decoder_start_token_id` (T5: the padding token; BART: `</s>`), not from the end of text.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from lmlab.errors import LmlabError
from lmlab.seq2seq.model import Seq2Seq
from lmlab.seq2seq.search_options import DEFAULT_ALPHA, check_beam


class HFCache:
    """Decoding state: the sources' encoder output and mask, and the decoder's past keys and
    values (transformers' cache, extended as targets are read)."""

    def __init__(self, memory: torch.Tensor, keep: torch.Tensor) -> None:
        self.memory, self.keep, self.past, self.length = memory, keep, None, 0

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the rows `index`, in that order (beam search's surviving hypotheses)."""
        self.memory, self.keep = (
            self.memory.index_select(0, index),
            self.keep.index_select(0, index),
        )
        if self.past is not None:
            self.past.reorder_cache(index)


class HFEncoderDecoder(nn.Module):
    """An `AutoModelForSeq2SeqLM` with the interface of lmlab's encoder-decoders."""

    def __init__(self, model) -> None:
        super().__init__()
        self.hf = model
        c = model.config
        context = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", 512)
        vocab = model.get_output_embeddings().weight.shape[0]
        self.config = SimpleNamespace(context=context, vocab_size=vocab)

    def encode(self, src: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.hf.get_encoder()(input_ids=src, attention_mask=keep).last_hidden_state

    def new_cache(self, memory: torch.Tensor, keep: torch.Tensor | None = None) -> HFCache:
        keep = keep if keep is not None else torch.ones(memory.shape[:2], dtype=torch.long)
        return HFCache(memory, keep.long())

    def decode(self, tgt, memory=None, keep=None, cache: HFCache | None = None, *,
               last_only: bool = False) -> torch.Tensor:  # fmt: skip
        """Next-token logits (B, T, V) of target ids (B, T) after what `cache` holds."""
        cache = cache if cache is not None else self.new_cache(memory, keep)
        past = (
            {"cache": cache.past} if cache.past is not None else {}
        )  # past_key_values, as transformers 5 names it
        out = self.hf(encoder_outputs=(cache.memory,), attention_mask=cache.keep,
                      decoder_input_ids=tgt, use_cache=True, **past)  # fmt: skip
        cache.past, cache.length = out.past_key_values, cache.length + tgt.shape[1]
        return out.logits[:, -1:] if last_only else out.logits

    def forward(self, src, keep, tgt) -> torch.Tensor:
        return self.hf(input_ids=src, attention_mask=keep, decoder_input_ids=tgt).logits

    @torch.no_grad()
    def cross_attention(self, src, keep, tgt) -> torch.Tensor:
        """The last decoder layer's cross-attention (B, T, S), averaged over its heads."""
        out = self.hf(input_ids=src, attention_mask=keep, decoder_input_ids=tgt,
                      output_attentions=True)  # fmt: skip
        if not out.cross_attentions or out.cross_attentions[-1] is None:
            raise LmlabError("this model's attention implementation does not return weights")
        return out.cross_attentions[-1].float().mean(1)


class HFSeq2Seq(Seq2Seq):
    """A Hugging Face encoder-decoder: the Seq2Seq API, translating by `generate`."""

    def __init__(self, model: HFEncoderDecoder, tokenizer, *, name: str) -> None:
        c = model.hf.config
        end = c.eos_token_id if c.eos_token_id is not None else min(tokenizer.eos_ids)
        super().__init__(model, tokenizer, name=name, end_id=end)
        self.start = c.decoder_start_token_id if c.decoder_start_token_id is not None else end

    @property
    def start_id(self) -> int:
        """The token a target starts from: the model's decoder_start_token_id."""
        return self.start

    def source_ids(self, text: str) -> list[int]:
        """The source's ids with the tokenizer's own special tokens, ending with `</s>`."""
        ids = self.tokenizer.encode(text, add_special_tokens=True)
        return ids if ids and ids[-1] == self.end_id else [*ids, self.end_id]

    def source_token_ids(
        self, texts: list[str], *, truncate: bool = False
    ) -> tuple[list[list[int]], int]:
        """`source_ids` without the end token the decoders append, as `Seq2Seq`'s."""
        ids = [self.source_ids(t)[:-1] for t in texts]
        limit = self.model.config.context - 1
        long = [i for i, row in enumerate(ids) if len(row) > limit]
        if long and not truncate:
            i = long[0]
            raise LmlabError(
                f"source {i + 1} has {len(ids[i])} tokens; this model reads at most {limit}",
                param="source",
            )
        return [row[:limit] for row in ids], len(long)

    @torch.inference_mode()
    def condition(self, source: str):
        """The language model of the targets of `source` (start it from `[start_id]`)."""
        from lmlab.seq2seq.model import ConditionedLM

        ids = self.source_ids(source)
        if len(ids) > self.model.config.context:
            raise LmlabError(
                f"the source has {len(ids)} tokens; this model reads at most "
                f"{self.model.config.context}",
                param="source",
            )
        src = torch.tensor([ids], device=self.model.hf.device)
        keep = torch.ones_like(src)
        return ConditionedLM(self, self.model.encode(src, keep), keep)

    @torch.inference_mode()
    def translate(
        self,
        texts: str | list[str],
        *,
        beam: int = 1,
        alpha: float = DEFAULT_ALPHA,
        max_tokens: int | None = None,
        length: tuple[float, int] = (2.0, 10),
        batch_size: int = 16,
        truncate: bool = False,
        seed: int | None = None,
        **sampling,
    ) -> list[str]:
        """Translations of `texts`: greedy or beam search by the model's own `generate` (its
        length penalty, so `alpha` is not taken), sampling by lmlab's decoding (as `Seq2Seq`).
        Each has at most `a * source tokens + b` tokens for `length` = (a, b), and `max_tokens`."""
        if any(v is not None for v in sampling.values()):
            return super().translate(texts, beam=beam, alpha=alpha, max_tokens=max_tokens,
                                     length=length, batch_size=batch_size, truncate=truncate,
                                     seed=seed, **sampling)  # fmt: skip
        check_beam(beam)
        if alpha != DEFAULT_ALPHA:
            raise LmlabError(
                "a Hugging Face model's beam search uses its own length penalty; leave out alpha",
                param="alpha",
            )
        texts = [texts] if isinstance(texts, str) else list(texts)
        pad = self.model.hf.config.pad_token_id
        pad = pad if pad is not None else self.end_id
        sources, _ = self.source_token_ids(texts, truncate=truncate)
        out = []
        for first in range(0, len(texts), batch_size):
            ids = [[*s, self.end_id] for s in sources[first : first + batch_size]]
            S = max(map(len, ids))
            src = torch.tensor([r + [pad] * (S - len(r)) for r in ids], device=self.model.hf.device)
            keep = torch.tensor([[1] * len(r) + [0] * (S - len(r)) for r in ids], device=src.device)
            budget = int(length[0] * S + length[1])
            budget = min(budget, max_tokens) if max_tokens else budget
            made = self.model.hf.generate(input_ids=src, attention_mask=keep, num_beams=beam,
                                          do_sample=False, max_new_tokens=budget)  # fmt: skip
            out += [self.tokenizer.decode(row.tolist()).strip() for row in made]
        return out


def load_hf_seq2seq(folder: str | Path, *, device: str = "cpu") -> HFSeq2Seq:
    """The encoder-decoder of a local Hugging Face folder (config.json, weights,
    tokenizer.json); a one-line error for a folder that is not one."""
    import json

    from lmlab._offline import quiet_transformers
    from lmlab.text.hf_tokenizer import HFTokenizer

    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise LmlabError(f"{folder / 'config.json'} is not a readable model config") from None
    if not config.get("is_encoder_decoder"):
        kind = config.get("model_type", "unknown")
        raise LmlabError(
            f"{folder} holds a {kind!r} model, not an encoder-decoder (T5, BART, Marian); "
            "use it with lmlab generate or lmlab.load_lm",
            param="model",
        )
    tokenizer = HFTokenizer(folder)
    from transformers import AutoModelForSeq2SeqLM

    with quiet_transformers():
        try:
            model = AutoModelForSeq2SeqLM.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            raise LmlabError(f"cannot load {folder}: {str(e).splitlines()[0]}") from None
    return HFSeq2Seq(HFEncoderDecoder(model.to(device).eval()), tokenizer, name=folder.name)
