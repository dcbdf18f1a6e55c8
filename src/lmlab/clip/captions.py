"""Captions from labels: each class named by one or more words (synonyms), each name put into
templates such as "a photo of a {label}." (the lecture's "labels on images" route; CLIP's
prompt templates, Radford et al. 2021, section 3.1.4).

A training image of class c gets, at each step, one caption drawn from all of c's
(template, synonym) combinations: the text side sees varied wordings of the same class. Zero-shot
classification embeds every combination of a class and averages them (a prompt ensemble).
"""

from __future__ import annotations

from lmlab.errors import LmlabError

TEMPLATES = (
    "a photo of a {label}.",
    "a picture of a {label}.",
    "an image of a {label}.",
    "a black and white photo of a {label}.",
    "a low resolution photo of a {label}.",
    "a photo of the {label}.",
    "a {label}.",
)


def check_templates(templates: list[str] | tuple[str, ...]) -> list[str]:
    """The templates, each with a {label} place; a one-line error for one without."""
    templates = list(templates)
    if not templates:
        raise LmlabError("give at least one caption template", param="template")
    for t in templates:
        if "{label}" not in t:
            raise LmlabError(
                f"the caption template {t!r} has no {{label}}: write e.g. 'a photo of a {{label}}'",
                param="template",
            )
        try:
            t.format(label="x")
        except (KeyError, IndexError, ValueError):
            raise LmlabError(
                f"the caption template {t!r} may hold only {{label}} in braces", param="template"
            ) from None
    return templates


def read_class_names(path) -> dict[str, list[str]]:
    """A classes file: line i names class i (labels 0, 1, ...) or, as `label: names`, a label;
    synonyms are separated by '|' ("t-shirt|top|tee"). Returns label -> names."""
    from pathlib import Path

    from lmlab.text.files import open_text

    path = Path(path)
    if not path.is_file():
        raise LmlabError(f"no such file: {path}", param="classes")
    names: dict[str, list[str]] = {}
    with open_text(path) as f:
        lines = [line.strip() for line in f if line.strip()]
    for i, line in enumerate(lines):
        label, sep, rest = line.partition(":")
        key, words = (label.strip(), rest) if sep else (str(i), line)
        synonyms = [w.strip() for w in words.split("|") if w.strip()]
        if not synonyms:
            raise LmlabError(f"{path} line {i + 1} names no class", param="classes")
        names[key] = synonyms
    return names


def caption_bank(
    classes: list[str], names: dict[str, list[str]] | None, templates: list[str]
) -> tuple[list[str], list[list[int]]]:
    """Every caption of every class, and for each class the positions of its captions.

    Args:
        classes: the class labels, in order (a label with no names is its own name).
        names: label -> synonyms (from a classes file), or None.
        templates: checked templates with {label}.
    """
    bank: list[str] = []
    options: list[list[int]] = []
    for c in classes:
        words = (names or {}).get(c) or [c]
        options.append(list(range(len(bank), len(bank) + len(words) * len(templates))))
        bank += [t.format(label=w) for w in words for t in templates]
    return bank, options
