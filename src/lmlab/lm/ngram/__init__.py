"""Count-based language models: n-gram counts, smoothing (MLE, add-k, Kneser–Ney), ARPA files."""

from lmlab.lm.ngram.arpa import read_arpa, write_arpa
from lmlab.lm.ngram.model import NgramConfig, NgramLM, WordTokenizer, load_run

__all__ = ["NgramConfig", "NgramLM", "WordTokenizer", "load_run", "read_arpa", "write_arpa"]
