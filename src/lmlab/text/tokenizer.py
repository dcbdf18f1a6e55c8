"""The tokenizer half of the LanguageModel interface.

Every model's tokenizer (Hugging Face `tokenizer.json`, llama.cpp's GGUF vocabulary, later our
own BPE and n-gram word lists) answers the same questions: text to ids and back, the vocabulary,
the special tokens, and how a chat is rendered to a prompt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from lmlab.text.chat_template import render_chat


@dataclass(frozen=True)
class VocabularySummary:
    """How a vocabulary splits into whole words, word pieces and special tokens."""

    size: int
    words: int  # tokens that start a word and are made of letters only
    pieces: int  # every other ordinary token: word continuations, punctuation, bytes
    special: int  # control tokens such as [CLS] or <|im_end|>


class Tokenizer(ABC):
    """Text <-> token ids for one model."""

    bos_token: str | None = None
    eos_token: str | None = None
    chat_template: str | None = None
    # How word-initial tokens are marked: "Ġ" (byte-level BPE), "▁" (SentencePiece), or None
    # for WordPiece, where instead continuation pieces carry "##".
    word_start: str | None = None

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids (the width of the model's output distribution)."""

    @property
    @abstractmethod
    def special_ids(self) -> frozenset[int]:
        """Ids of control tokens (never shown in decoded text by default)."""

    @property
    @abstractmethod
    def eos_ids(self) -> frozenset[int]:
        """Ids that end a generation (end of text, end of turn)."""

    @abstractmethod
    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text are recognised.

        `add_special_tokens` adds what the model adds around a sequence (BOS, [CLS]/[SEP]).
        """

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of each text (tokenizers that can run them in parallel do)."""
        return [self.encode(text) for text in texts]

    @abstractmethod
    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        """The text of `ids` (control tokens left out unless asked)."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry of an id, as stored (e.g. 'Ġthe', '##ing', '<|im_end|>')."""

    def tokens(self, text: str) -> list[str]:
        """The vocabulary entries `text` splits into."""
        return [self.id_to_token(i) for i in self.encode(text)]

    def render_chat(
        self, messages: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for `messages`, by this model's chat template."""
        return render_chat(
            self.chat_template,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )

    def summary(self) -> VocabularySummary:
        """Count whole words, word pieces and special tokens in the vocabulary."""
        words = pieces = special = 0
        for i in range(self.vocab_size):
            if i in self.special_ids:
                special += 1
                continue
            if self._is_word(self.id_to_token(i)):
                words += 1
            else:
                pieces += 1
        return VocabularySummary(self.vocab_size, words, pieces, special)

    def _is_word(self, token: str) -> bool:
        if self.word_start is None:
            return token.isalpha()  # WordPiece: "##ing" is a piece, "bank" a word
        return token.startswith(self.word_start) and token[len(self.word_start) :].isalpha()
