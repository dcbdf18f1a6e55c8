"""Bag-of-words and TF-IDF encoders: scikit-learn's vectorizers behind the Encoder interface.

A text becomes one column per vocabulary word:
  counts       how often each word occurs;
  frequencies  counts / number of (kept) words in the text;
  tfidf        counts x idf, idf(w) = ln((1 + n) / (1 + df(w))) + 1 (scikit-learn's smoothed
               idf: n texts, df(w) of them contain w).
`encode` L2-normalizes rows by default, as for every encoder; pass normalize_embeddings=False
for raw counts. Fitted encoders are saved as a folder: lmlab.json, vocabulary.json (+ idf.npy).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmlab.embed.base import Encoded, Encoder
from lmlab.errors import LmlabError
from lmlab.home import atomic_dir
from lmlab.runs import RUN_FILE

WEIGHTINGS = ("counts", "frequencies", "tfidf")


class BagOfWordsEncoder(Encoder):
    """Word counts, frequencies or TF-IDF over a vocabulary fitted on a corpus.

    Args:
        vocabulary: the words, in column order.
        weighting: counts, frequencies or tfidf.
        idf: one weight per word (tfidf only).
        stop_words: "english" (scikit-learn's list), a list of words, or None.
        lowercase: fold case before counting.

    Example:
        >>> enc = BagOfWordsEncoder.fit(["the man bites the dog", "the dog bites the man"])
        >>> enc.vocabulary
        ['bites', 'dog', 'man', 'the']
        >>> enc.encode("the dog", normalize_embeddings=False)
        array([0., 1., 0., 1.], dtype=float32)
    """

    def __init__(
        self,
        vocabulary: list[str],
        *,
        weighting: str = "counts",
        idf: np.ndarray | None = None,
        stop_words: str | list[str] | None = None,
        lowercase: bool = True,
        name: str | None = None,
    ) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        if weighting not in WEIGHTINGS:
            raise LmlabError(f"weighting must be one of {', '.join(WEIGHTINGS)}", param="weighting")
        if weighting == "tfidf" and (idf is None or len(idf) != len(vocabulary)):
            raise LmlabError("a tfidf encoder needs one idf weight per vocabulary word")
        self.vocabulary = list(vocabulary)
        self.weighting = weighting
        self.idf = None if idf is None else np.asarray(idf, np.float32)
        self.stop_words = stop_words
        self.lowercase = lowercase
        self.name = name or ("tfidf" if weighting == "tfidf" else "bow")
        self.dimension = len(self.vocabulary)
        self._vectorizer = CountVectorizer(
            vocabulary=self.vocabulary, stop_words=stop_words, lowercase=lowercase
        )

    @classmethod
    def fit(
        cls,
        corpus: list[str],
        *,
        weighting: str = "counts",
        stop_words: str | list[str] | None = None,
        lowercase: bool = True,
        min_df: int = 1,
        max_features: int | None = None,
    ) -> BagOfWordsEncoder:
        """Learn the vocabulary (and idf weights) of `corpus`."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = [t for t in corpus if t.strip()]
        if not docs:
            raise LmlabError("the corpus has no text to fit a vocabulary on", param="corpus")
        vectorizer = TfidfVectorizer(
            stop_words=stop_words, lowercase=lowercase, min_df=min_df, max_features=max_features
        )
        try:
            vectorizer.fit(docs)
        except ValueError as e:  # e.g. every word is a stop word
            raise LmlabError(f"cannot fit a vocabulary: {e}") from None
        idf = vectorizer.idf_ if weighting == "tfidf" else None
        vocabulary = list(vectorizer.get_feature_names_out())
        return cls(
            vocabulary, weighting=weighting, idf=idf, stop_words=stop_words, lowercase=lowercase
        )

    def _encode_batch(self, texts: list[str], batch_size: int) -> Encoded:
        counts = self._vectorizer.transform(texts).astype(np.float32)  # sparse (n, V)
        v = counts.toarray()
        if self.weighting == "frequencies":
            v /= np.maximum(v.sum(axis=1, keepdims=True), 1)
        elif self.weighting == "tfidf":
            v *= self.idf
        return Encoded(v, n_tokens=int(counts.sum()))

    def save(self, folder: str | Path) -> Path:
        """Write the encoder to `folder` (atomically); load it with lmlab.load_encoder(folder)."""
        folder = Path(folder)
        with atomic_dir(folder, replaces=RUN_FILE) as tmp:
            meta = {
                "kind": self.name,
                "weighting": self.weighting,
                "stop_words": self.stop_words,
                "lowercase": self.lowercase,
            }
            (tmp / RUN_FILE).write_text(json.dumps(meta, indent=2))
            (tmp / "vocabulary.json").write_text(json.dumps(self.vocabulary, ensure_ascii=False))
            if self.idf is not None:
                np.save(tmp / "idf.npy", self.idf)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BagOfWordsEncoder:
        """Read a folder written by `save`."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / RUN_FILE).read_text())
            vocabulary = json.loads((folder / "vocabulary.json").read_text())
            idf = np.load(folder / "idf.npy") if (folder / "idf.npy").is_file() else None
        except (OSError, ValueError) as e:
            raise LmlabError(f"{folder} is not a saved bag-of-words encoder: {e}") from None
        return cls(
            vocabulary,
            weighting=meta.get("weighting", "counts"),
            idf=idf,
            stop_words=meta.get("stop_words"),
            lowercase=meta.get("lowercase", True),
        )


def load_bag_of_words(folder: Path, **options) -> BagOfWordsEncoder:
    """Loader for `lmlab.json` kinds "bow" and "tfidf" (see lmlab.runs.RUN_KINDS)."""
    return BagOfWordsEncoder.load(folder)
