"""Language models trained from scratch: one readable file per architecture.

`MODELS` maps a kind (as in `lmlab train KIND` and a run's lmlab.json) to its module, the model
class and config dataclass there, and the config fields the kind sets.

Every model class has the same small surface, which the trainer and `NeuralLM` rely on:
`config`, `sequence_length` (tokens per training row), `carries_state` (trained on consecutive
batches with its state carried over), `bounded_context` (a Transformer's fixed window),
`new_cache(batch_size)`, `forward(idx, cache=None, *, last_only=False) -> logits (B, T, V)` and
`hidden_states(idx, cache=None) -> (B, T, C)`, the vectors the output layer reads (pooled into
text embeddings by lmlab.embed.trained).
BERT differs: `objective = "masked"`, and `forward(idx, keep=None)` reads a whole window.
"""

MODELS = {
    "mlp": ("lmlab.lm.neural.mlp", "MLPLM", "MLPConfig", {}),
    "rnn": ("lmlab.lm.neural.rnn", "RNNLM", "RNNConfig", {"cell": "rnn"}),
    "lstm": ("lmlab.lm.neural.rnn", "RNNLM", "RNNConfig", {"cell": "lstm"}),
    "gru": ("lmlab.lm.neural.rnn", "RNNLM", "RNNConfig", {"cell": "gru"}),
    "gpt": ("lmlab.lm.neural.gpt", "GPT", "GPTConfig", {}),
    "bert": ("lmlab.lm.neural.bert", "BertMLM", "BertConfig", {}),  # masked, not causal
}

# encoder-decoders (`lmlab train seq2seq --arch`): arch -> module, model class, config dataclass;
# both have the same surface: encode, new_cache, decode, forward, cross_attention
SEQ2SEQ_ARCHS = {
    "transformer": ("lmlab.lm.neural.transformer", "Transformer", "TransformerConfig"),
    "rnn": ("lmlab.lm.neural.seq2seq_rnn", "Seq2SeqRNN", "Seq2SeqRNNConfig"),
}

# `lmlab train` options -> the model config field they set (the same name in every config)
TRAIN_CLI_OPTIONS = {
    "layers": "n_layer",
    "heads": "n_head",
    "dim": "n_embd",
    "context": "context",
    "dropout": "dropout",
    "hidden": "n_hidden",
    "nsp": "nsp",
    "positions": "positions",
}
