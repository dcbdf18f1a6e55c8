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
from lmlab.seq2seq.batching import positions
from lmlab.seq2seq.decoding import in_batches, sampling_params
from lmlab.seq2seq.search_options import DEFAULT_ALPHA, Limits

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

    def source_token_ids(
        self, texts: list[str], *, truncate: bool = False
    ) -> tuple[list[list[int]], int]:
        """Token ids of source texts, and how many were longer than the model reads: cut to
        fit when `truncate`, else an error naming the first one."""
        return self._token_ids(texts, "source", truncate)

    def target_token_ids(
        self, texts: list[str], *, truncate: bool = False
    ) -> tuple[list[list[int]], int]:
        """Token ids of target texts, as `source_token_ids`."""
        return self._token_ids(texts, "target", truncate)

    def _token_ids(self, texts: list[str], side: str, truncate: bool):
        limit = positions(self.model)
        ids = self.tokenizer.encode_batch(list(texts)) if texts else []
        if limit is None:
            return ids, 0
        long = [i for i, row in enumerate(ids) if len(row) > limit - 1]  # + the end or start
        if long and not truncate:
            i = long[0]
            raise LmlabError(
                f"{side} {i + 1} has {len(ids[i])} tokens; this model reads at most {limit - 1}",
                param=side,
            )
        return [row[: limit - 1] for row in ids], len(long)

    def translate(
        self,
        texts: str | list[str],
        *,
        beam: int = 1,
        alpha: float = DEFAULT_ALPHA,
        max_tokens: int | None = None,
        length: tuple[float, int] = (2.0, 10),
        batch_size: int = 32,
        truncate: bool = False,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        min_p: float | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
    ) -> list[str]:
        """Translations of `texts` (one text: a list of one), `batch_size` sources at a time.

        Greedy by default; `beam` > 1 is beam search with GNMT's length penalty `alpha`
        (seq2seq/beam.py); a temperature, top-k, top-p, min-p or repetition penalty samples
        (lmlab.sampling; `seed` makes it repeatable). A translation has at most
        `a * source tokens + b` tokens for `length` = (a, b), and at most `max_tokens`.
        A source longer than the model reads is an error, or cut when `truncate`.

        Example:
            >>> lmlab.load_seq2seq("runs/en-es").translate(["A man is playing a guitar."], beam=4)
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = self.translate_ids(texts, beam=beam, alpha=alpha, max_tokens=max_tokens,
                                 length=length, batch_size=batch_size, truncate=truncate,
                                 temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                 repetition_penalty=repetition_penalty, seed=seed)  # fmt: skip
        return [self.tokenizer.decode(row).strip() for row in ids]

    def translate_ids(self, texts: list[str], *, beam: int = 1, alpha: float = DEFAULT_ALPHA,
                      max_tokens: int | None = None, length: tuple[float, int] = (2.0, 10),
                      batch_size: int = 32, truncate: bool = False, seed: int | None = None,
                      **sampling) -> list[list[int]]:  # fmt: skip
        """The target token ids of `translate` (same options)."""
        params = sampling_params(beam, sampling)
        bound = Limits(*length, max_tokens=max_tokens)
        sources, _ = self.source_token_ids(texts, truncate=truncate)
        limits = [bound.of(len(s), positions(self.model)) for s in sources]
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return in_batches(self.model, sources, self.end_id, limits, beam=beam, alpha=alpha,
                          params=params, batch_size=batch_size, generator=generator,
                          start_id=self.start_id)  # fmt: skip

    def score(self, sources: list[str], targets: list[str], *, batch_size: int = 32) -> list[float]:
        """log P(target | source) of each pair, in nats: the sum of the teacher-forced
        log-probabilities of the target's tokens and its end token."""
        from lmlab.seq2seq.evaluate import pair_log_probs

        return [lp for lp, _ in pair_log_probs(self, sources, targets, batch_size=batch_size)]

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
