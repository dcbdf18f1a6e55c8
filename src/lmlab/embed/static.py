"""Static input-embedding rows of any language model (lecture 003 samples BERT's matrix).

Before any attention, a model maps each token id to one row of its input-embedding matrix;
those rows are context-free word vectors. A text's vector here is the mean of its tokens' rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmlab.embed.base import Encoded, Encoder
from lmlab.errors import LmlabError
from lmlab.text.hf_tokenizer import HFTokenizer


class StaticEncoder(Encoder):
    """The mean of a text's input-embedding rows; a text with no tokens gets the zero vector.

    Args:
        folder: any transformers model folder (an encoder such as BERT, or a causal LM).

    Example:
        >>> enc = StaticEncoder(folder)
        >>> enc.matrix.shape       # (vocab_size, d): the lecture's word-embedding matrix
        >>> enc.encode("bank").shape
    """

    def __init__(self, folder: str | Path, *, name: str | None = None) -> None:
        from transformers import AutoModel

        from lmlab._offline import quiet_transformers

        folder = Path(folder)
        self.name = name or folder.name
        self.tokenizer = HFTokenizer(folder)
        try:
            with quiet_transformers():
                model = AutoModel.from_pretrained(folder, local_files_only=True)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise LmlabError(f"cannot load a model from {folder}: {first}") from None
        self.matrix = model.get_input_embeddings().weight.detach().float().numpy().copy()
        self.dimension = int(self.matrix.shape[1])
        self.max_length = None  # no window: rows are looked up, not attended over

    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        return self._encode_ids([self.tokenizer.encode(t) for t in texts], batch_size)

    def _encode_ids(self, ids: list[list[int]], batch_size: int) -> Encoded:
        out = np.zeros((len(ids), self.dimension), np.float32)
        for i, row in enumerate(ids):
            if row:
                out[i] = self.matrix[row].mean(axis=0)
        return Encoded(out, n_tokens=sum(map(len, ids)))
