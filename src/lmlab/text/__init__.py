"""Text: tokenizers and chat templates."""

from lmlab.text.tokenizer import Tokenizer, VocabularySummary

__all__ = ["Tokenizer", "VocabularySummary"]
