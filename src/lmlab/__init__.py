"""lmlab: language models and text embeddings on your own machine, offline.

The public API, imported lazily so that `import lmlab` (and `lmlab --help`) stays fast:

    >>> import lmlab
    >>> lm = lmlab.load_lm("smollm2-135m-instruct")
    >>> lmlab.generate(lm, "The capital of France is", temperature=0, max_tokens=8).text
    >>> lmlab.score(lm, "The man bites the dog.").perplexity
"""

from importlib import import_module

from lmlab._offline import enforce_offline

enforce_offline()

__version__ = "0.1.0"

_EXPORTS = {
    "LmlabError": "lmlab.errors",
    "load_lm": "lmlab.models",
    "load_tokenizer": "lmlab.models",
    "available_models": "lmlab.models",
    "LanguageModel": "lmlab.lm.base",
    "State": "lmlab.lm.base",
    "Tokenizer": "lmlab.text.tokenizer",
    "SamplingParams": "lmlab.sampling",
    "generate": "lmlab.decode",
    "Generation": "lmlab.decode",
    "Chunk": "lmlab.decode",
    "chat": "lmlab.decode",
    "score": "lmlab.evaluate",
    "perplexity": "lmlab.evaluate",
    "Score": "lmlab.evaluate",
    "train": "lmlab.training",
    "TrainConfig": "lmlab.training",
    "TrainResult": "lmlab.training",
    "train_tokenizer": "lmlab.text.tokenizer_training",
    "load_masked_lm": "lmlab.lm.neural.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")
