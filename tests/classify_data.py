"""A small 3-class labelled corpus for classifier tests: word counts that overlap between
classes, so no classifier separates them perfectly and unpenalized fits stay finite."""

import random

WORDS = ["good", "bad", "meh", "film", "plot", "story", "actor", "long"]
# class -> its favourite word; the rest of a text is drawn from all words alike.
CLASSES = {"pos": "good", "neg": "bad", "mid": "meh"}


def corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = list(CLASSES)[i % 3]
        words = [CLASSES[label] if rng.random() < 0.3 else rng.choice(WORDS) for _ in range(6)]
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels
