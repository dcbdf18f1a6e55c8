"""Classifiers shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.runs import RUN_FILE


def default_sentiment_folder() -> Path:
    """The shipped SST-2 sentiment classifier (NEGATIVE/POSITIVE): a logit head on the bundled
    all-minilm-l6-v2, made by scripts/train_sentiment_model.py.

    Example:
        >>> TextClassifier.load(default_sentiment_folder()).predict(["What a great film."])
        array(['POSITIVE'], dtype=object)
    """
    folder = Path(__file__).resolve().parents[1] / "resources" / "sentiment-sst2"
    if not (folder / RUN_FILE).is_file():
        raise LmlabError(f"the default sentiment model is missing from {folder}; reinstall lmlab")
    return folder
