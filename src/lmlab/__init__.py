"""lmlab: language models and text embeddings on your own machine, offline.

The public API, imported lazily so that `import lmlab` (and `lmlab --help`) stays fast:

    >>> import lmlab
    >>> lm = lmlab.load_lm("smollm2-135m-instruct")
    >>> lmlab.generate(lm, "The capital of France is", temperature=0, max_tokens=8).text
    >>> lmlab.score(lm, "The man bites the dog.").perplexity
    >>> lmlab.similarity("bank", "banks")        # cosine of all-minilm-l6-v2 vectors
"""

from importlib import import_module

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
    "generate_stream": "lmlab.decode",
    "Generation": "lmlab.decode",
    "Chunk": "lmlab.decode",
    "chat": "lmlab.decode",
    "chat_stream": "lmlab.decode",
    "score": "lmlab.evaluate",
    "perplexity": "lmlab.evaluate",
    "Score": "lmlab.results",
    "evaluate_file": "lmlab.evaluate",
    "Evaluation": "lmlab.results",
    "NgramLM": "lmlab.lm.ngram.model",
    "bigram_table": "lmlab.lm.ngram.report",
    "compare_orders": "lmlab.lm.ngram.report",
    "Encoder": "lmlab.embed.base",
    "load_encoder": "lmlab.embed.load",
    "encode": "lmlab.embed.load",
    "embed_tokens": "lmlab.embed.load",
    "BagOfWordsEncoder": "lmlab.embed.sparse",
    "similarity": "lmlab.embed.similarity",
    "VectorIndex": "lmlab.embed.index",
    "cluster": "lmlab.embed.cluster",
    "project": "lmlab.embed.maps",
    "pca_curve": "lmlab.embed.maps",
    "embed_file": "lmlab.embed.batch",
    "train": "lmlab.training.lm",
    "TrainConfig": "lmlab.training.results",
    "train_lora": "lmlab.lm.lora_lm",
    "TrainResult": "lmlab.training.results",
    "train_tokenizer": "lmlab.text.tokenizer_training",
    "load_masked_lm": "lmlab.lm.neural.run",
    "train_seq2seq": "lmlab.training.seq2seq",
    "train_simcse": "lmlab.contrastive.train",
    "train_contrastive": "lmlab.contrastive.train",
    "evaluate_sts": "lmlab.contrastive.sts",
    "train_sft": "lmlab.posttrain.train",
    "train_dpo": "lmlab.posttrain.train",
    "train_reward": "lmlab.posttrain.train",
    "load_reward": "lmlab.posttrain.reward",
    "make_prefs": "lmlab.posttrain.prefs",
    "export_gguf": "lmlab.lm.gguf_export",
    "load_seq2seq": "lmlab.seq2seq.model",
    "TextClassifier": "lmlab.classify.classifier",
    "train_clip": "lmlab.training.clip",
    "ClipEncoder": "lmlab.clip.encoder",
    "ImageEncoder": "lmlab.embed.image_base",
    "read_images": "lmlab.images.files",
    "pipeline": "lmlab.pipelines",
    "train_word2vec": "lmlab.wordvec.train",
    "WordVectors": "lmlab.wordvec.vectors",
    "evaluate_analogies": "lmlab.wordvec.evaluate",
    "evaluate_word_sim": "lmlab.wordvec.evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name in ("progress", "ray"):  # modules: lmlab.progress.set_display, lmlab.ray.embed
        return import_module(f"lmlab.{name}")
    raise AttributeError(f"module 'lmlab' has no attribute {name!r}")
