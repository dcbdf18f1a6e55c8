"""Language models trained from scratch: one readable file per architecture.

`MODELS` maps a kind (as in `lmlab train KIND` and a run's lmlab.json) to its module, where the
model class and its config dataclass live.
"""

MODELS = {
    "gpt": ("lmlab.lm.neural.gpt", "GPT", "GPTConfig"),
}
