"""The standard word-vector evaluations, as gensim scores them (so figures compare).

- Analogies (questions-words.txt, Mikolov et al. 2013): "a b c d" lines under ": section"
  headers; a question is right when d is the word nearest b - a + c (3CosAdd, a, b, c
  excluded). Case-insensitive; questions with a word outside the vocabulary are skipped and
  counted.
- Word similarity (WordSim-353, SimLex-999): "word1<TAB>word2<TAB>score" lines, `#` comments;
  the Spearman correlation x100 of cosine similarity with the human scores over the pairs in
  the vocabulary, the pairs left out counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError
from lmlab.wordvec.vectors import WordVectors


def _lines(path: str | Path) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LmlabError(f"cannot read {path}: {e}") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def evaluate_analogies(vectors: WordVectors, path: str | Path, batch: int = 512) -> dict:
    """Accuracy on an analogy file, overall and by section (see the module docstring)."""
    sections: dict[str, list[tuple[int, int, int, int]]] = {}
    section, skipped, total = "", 0, 0
    for n, line in _lines(path):
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        words = line.lower().split()
        if len(words) != 4:
            raise LmlabError(
                f"{path}:{n}: an analogy line has 4 words ('a b c d') or is a ': section' "
                f"header, not {line[:60]!r}"
            )
        total += 1
        rows = [vectors.lookup(w) for w in words]
        if None in rows:
            skipped += 1
            continue
        sections.setdefault(section, []).append(tuple(rows))  # type: ignore[arg-type]
    if total == 0:
        raise LmlabError(f"{path} holds no analogy questions ('a b c d' lines)")
    unit = vectors.unit
    by_section, right_all, asked_all = {}, 0, 0
    for name, questions in sections.items():
        q = np.array(questions)
        right = 0
        for start in range(0, len(q), batch):
            a, b, c, d = q[start : start + batch].T
            sims = (unit[b] - unit[a] + unit[c]) @ unit.T  # cosine up to a positive factor
            for col in (a, b, c):
                sims[np.arange(len(a)), col] = -np.inf
            right += int((sims.argmax(1) == d).sum())
        by_section[name] = {"accuracy": 100 * right / len(q), "questions": len(q)}
        right_all, asked_all = right_all + right, asked_all + len(q)
    return {
        "accuracy": 100 * right_all / asked_all if asked_all else 0.0,
        "questions": asked_all,
        "skipped_oov": skipped,
        "total": total,
        "sections": by_section,
    }


def evaluate_word_sim(vectors: WordVectors, path: str | Path) -> dict:
    """Spearman x100 (and Pearson x100) of cosine against the human scores of a pairs file."""
    from scipy.stats import pearsonr, spearmanr

    model, human, skipped, total = [], [], 0, 0
    for n, line in _lines(path):
        if line.startswith("#"):
            continue
        parts = line.split("\t")
        try:
            first, second, score = parts[0], parts[1], float(parts[2])
        except (IndexError, ValueError):
            raise LmlabError(
                f"{path}:{n}: a word-similarity line is 'word1<TAB>word2<TAB>score', "
                f"not {line[:60]!r}"
            ) from None
        total += 1
        a, b = vectors.lookup(first.lower()), vectors.lookup(second.lower())
        if a is None or b is None:
            skipped += 1
            continue
        model.append(float(vectors.unit[a] @ vectors.unit[b]))
        human.append(score)
    if total == 0:
        raise LmlabError(f"{path} holds no word pairs")
    if len(model) < 2:
        raise LmlabError(f"{path}: fewer than 2 of its {total} pairs are in the vocabulary")
    return {
        "spearman": 100 * float(spearmanr(model, human).statistic),
        "pearson": 100 * float(pearsonr(model, human).statistic),
        "pairs": len(model),
        "skipped_oov": skipped,
        "oov_ratio": skipped / total,
        "total": total,
    }
