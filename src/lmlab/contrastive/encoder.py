"""The encoder of a sentence-encoder run (`lmlab train simcse` / `lmlab train contrastive`)."""

from __future__ import annotations

from pathlib import Path

from lmlab.embed.base import Encoder
from lmlab.runs import read_run


def load_sentence_encoder(folder: str | Path, **_options) -> Encoder:
    """A tuned transformers encoder (pooled as its run file says), or a tuned BERT of ours
    (mean-pooled, as every BERT run embeds).

    Example:
        >>> enc = load_sentence_encoder("runs/minilm-sts")   # or lmlab.load_encoder(...)
    """
    folder = Path(folder)
    run = read_run(folder)
    if run.get("base") == "bert":
        from lmlab.embed.trained import TrainedEncoder
        from lmlab.lm.neural.run import build_model, load_weights, make_config
        from lmlab.text.hf_tokenizer import HFTokenizer

        model = build_model("bert", make_config("bert", **run["model"]))
        load_weights(model, folder / "model.safetensors")
        return TrainedEncoder(model, HFTokenizer(folder), name=folder.name, masked=True)
    from lmlab.embed.transformer import TransformerEncoder

    return TransformerEncoder(folder, name=folder.name, pooling=run.get("pooling"))
