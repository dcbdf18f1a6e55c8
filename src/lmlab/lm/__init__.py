"""Language models behind one interface (see `lmlab.lm.base`)."""

from lmlab.lm.base import LanguageModel, State

__all__ = ["LanguageModel", "State"]
