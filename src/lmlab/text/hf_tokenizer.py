"""Tokenizers stored as Hugging Face `tokenizer.json` (+ `tokenizer_config.json`).

Read with the `tokenizers` library directly: no `transformers` import, so `lmlab tokenize`
starts fast. The chat template comes from `chat_template.jinja` or `tokenizer_config.json`.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.text.tokenizer import Tokenizer


def _token_text(value: object) -> str | None:
    """A special token from tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` with the model's special tokens and chat template."""

    size_note: str | None = None  # set by train_tokenizer when the corpus gave fewer tokens

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer as RawTokenizer

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise LmlabError(f"no tokenizer.json in {folder}")
        try:
            self._tok = RawTokenizer.from_file(str(path))
        except Exception as e:  # a corrupt or foreign file
            raise LmlabError(f"cannot read {path}: {e}") from None
        self._tok.no_padding()  # sequence lengths are the caller's business (encoders pad)
        self._tok.no_truncation()
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        template_path = folder / "chat_template.jinja"
        self.chat_template = (
            template_path.read_text() if template_path.is_file() else config.get("chat_template")
        )
        self.kind = config.get("lmlab_kind")  # bpe, char, word, ... for tokenizers trained here
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        self.word_start = self._word_start_marker()
        self._eos = self._eos_from(folder)

    def _word_start_marker(self) -> str | None:
        spec = json.loads(self._tok.to_str())
        if spec["model"]["type"] == "WordPiece":
            return None
        text = json.dumps(spec.get("pre_tokenizer")) + json.dumps(spec.get("normalizer"))
        return "▁" if "Metaspace" in text or "▁" in text else "Ġ"

    def _eos_from(self, folder: Path) -> frozenset[int]:
        """End-of-generation ids: eos_token, plus generation_config.json's eos_token_id(s)."""
        ids = set()
        if self.eos_token is not None and (i := self._tok.token_to_id(self.eos_token)) is not None:
            ids.add(i)
        gen_path = folder / "generation_config.json"
        if gen_path.is_file():
            eos = json.loads(gen_path.read_text()).get("eos_token_id")
            ids.update([eos] if isinstance(eos, int) else eos or [])
        return frozenset(ids)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(i for i, t in self._tok.get_added_tokens_decoder().items() if t.special)

    @property
    def eos_ids(self) -> frozenset[int]:
        return self._eos

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)  # no offsets
        return [e.ids for e in encode(texts, add_special_tokens=False)]

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str:
        token = self._tok.id_to_token(token_id)
        return "" if token is None else token
