"""A trained encoder-decoder run, and the language model it becomes once given a source.

`Seq2Seq.condition(source)` is a LanguageModel over the target: its state starts from the
encoder's output for that source (the decoder's cache holds the cross-attention keys and
values, computed once), and a target starts with the end-of-text token, which is also the
token that ends it. So greedy decoding, sampling, scoring and serving are the decoding code
written for language models (lmlab.decode), not a second copy of it.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

import torch

from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel
from lmlab.lm.neural.run import NeuralState, load_weights, read_run
from lmlab.sampling_defaults import OPENAI

HF_LOADER = "lmlab.seq2seq.hf:load_hf_seq2seq"  # a Hugging Face folder (T5, BART, Marian)


class ConditionedLM(LanguageModel):
    """P(target | one source) as a LanguageModel: every row of a state reads the same source."""

    sampling_defaults = OPENAI  # temperature 1, no filtering: the model's own distribution

    def __init__(self, parent: Seq2Seq, memory: torch.Tensor, keep: torch.Tensor) -> None:
        self.parent, self.memory, self.keep = parent, memory, keep  # (1, S, C), (1, S)
        self.tokenizer = parent.tokenizer
        self.name = parent.name
        self.context_length = parent.model.config.context
        self._vocab_size = parent.model.config.vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @torch.inference_mode()
    def new_state(self, batch_size: int = 1) -> NeuralState:
        """Rows that each read the source: its cross-attention keys and values, computed once."""
        B = batch_size
        memory, keep = self.memory.expand(B, -1, -1), self.keep.expand(B, -1)
        return NeuralState(B, self.parent.model.new_cache(memory, keep))

    @torch.inference_mode()
    def forward(
        self, state: NeuralState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        ids = token_ids.to(self.memory.device)
        if state.cache.length + ids.shape[1] > self.context_length:
            raise LmlabError(
                f"the target would exceed the model's {self.context_length} positions",
                param="max_tokens",
            )
        state.length += ids.shape[1]
        logits = self.parent.model.decode(ids, cache=state.cache, last_only=not all_positions)
        logits = logits.float().cpu()
        return logits if all_positions else logits[:, -1]


class Seq2Seq:
    """A sequence-to-sequence run: its model, tokenizer and the token that starts a target."""

    def __init__(self, model, tokenizer, *, name: str, end_id: int) -> None:
        self.model, self.tokenizer, self.name, self.end_id = model.eval(), tokenizer, name, end_id

    @property
    def start_id(self) -> int:
        """The token a target starts from: ours, the end of text (a Hugging Face model's is
        its decoder_start_token_id)."""
        return self.end_id

    @torch.inference_mode()
    def condition(self, source: str) -> ConditionedLM:
        """The language model of the targets of `source` (start it from `[end_id]`)."""
        ids = self.tokenizer.encode(source)
        limit = self.model.config.context - 1
        if len(ids) > limit:
            raise LmlabError(
                f"the source has {len(ids)} tokens; this model reads at most {limit}",
                param="source",
            )
        device = next(self.model.parameters()).device
        src = torch.tensor([[*ids, self.end_id]], device=device)
        keep = torch.ones_like(src)
        return ConditionedLM(self, self.model.encode(src, keep), keep)

    def translate(self, texts: str | list[str], *, max_tokens: int | None = None) -> list[str]:
        """Greedy translations of `texts` (one text: a list of one), each at most `max_tokens`
        tokens (default: twice the source's tokens plus 10, within the model's positions)."""
        from lmlab.decode import generate

        texts = [texts] if isinstance(texts, str) else list(texts)
        out = []
        for text in texts:
            lm = self.condition(text)
            budget = max_tokens or 2 * len(self.tokenizer.encode(text)) + 10
            budget = min(budget, lm.context_length - 1)
            result = generate(lm, [self.end_id], temperature=0, max_tokens=budget,
                              sampling_defaults="model")  # fmt: skip
            out.append(result.text.strip())
        return out

    def __repr__(self) -> str:
        return f"Seq2Seq({self.name!r})"


def load_seq2seq(folder: str | Path, *, device: str = "cpu") -> Seq2Seq:
    """The sequence-to-sequence model of a run directory (`lmlab train seq2seq`, either
    arch), or of a local Hugging Face encoder-decoder folder (T5, BART, Marian: seq2seq/hf.py).

    Example:
        >>> m = load_seq2seq("runs/en-es")
        >>> m.translate(["A man is playing a guitar."])
    """
    from lmlab.runs import is_run
    from lmlab.text.hf_tokenizer import HFTokenizer
    from lmlab.training.seq2seq import KIND, build_model, end_id, model_config

    folder = Path(folder)
    if folder.is_dir() and not is_run(folder) and (folder / "config.json").is_file():
        module, function = HF_LOADER.split(":")  # a string, as a registry's: no import cycle
        return getattr(import_module(module), function)(folder, device=device)
    run = read_run(folder)
    if run.get("kind") != KIND:
        raise LmlabError(
            f"{folder} holds a {run.get('kind')!r} run, not a sequence-to-sequence model "
            "(lmlab train seq2seq)",
            param="model",
        )
    arch = run["train"].get("arch", "transformer")
    model = build_model(arch, model_config(arch, None, **run["model"])).to(device)
    load_weights(model, folder / "model.safetensors")
    tokenizer = HFTokenizer(folder)
    return Seq2Seq(model, tokenizer, name=folder.name, end_id=end_id(tokenizer))
