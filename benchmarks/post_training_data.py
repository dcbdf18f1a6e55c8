"""The post-training benchmark's data, built from ../shared/data only (seeded, so every run
builds the same files).

- An instruction mixture in FLAN's way (Wei et al. 2022: many tasks, several phrasings of each):
  SST-2 sentiment (answer: positive or negative), en->es translation, a heading for a
  WikiText-2 paragraph (its `= = ... = =` line). A fourth task, STS-B similarity (0-5), is kept
  out of training entirely: asking it after tuning tests generalisation to an unseen instruction.
- Verifiable instructions, as IFEval states them (Zhou et al. 2023): a request about a topic plus
  one constraint a rule can check (prefs.CHECKS: at most N words, exactly K bullets, all
  lowercase, ending with a given word, including a keyword, JSON with given keys). Training and
  held-out prompts use disjoint topics.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

SST2_PHRASINGS = [
    "What is the sentiment of this movie review? Answer positive or negative.\n\n{text}",
    "Review: {text}\nIs this review positive or negative?",
    "{text}\n\nDid the reviewer like the film? Answer with one word: positive or negative.",
]
TRANSLATE_PHRASINGS = [
    "Translate to Spanish: {text}",
    "How do you say this in Spanish?\n{text}",
    "English: {text}\nGive the Spanish translation.",
]
HEADING_PHRASINGS = [
    "Write a short heading for this paragraph:\n\n{text}",
    "{text}\n\nWhat would be a good section title for the text above?",
    "Give this encyclopedia paragraph a title of a few words.\n\n{text}",
]
STS_PROMPT = (
    "How similar in meaning are these two sentences, from 0 (unrelated) to 5 (the same "
    "meaning)? Answer with a number.\n1. {a}\n2. {b}"
)

TOPICS = [
    "the ocean",
    "a city park",
    "learning to cook",
    "winter mornings",
    "public libraries",
    "bicycles",
    "a rainy day",
    "the moon",
    "coffee",
    "old maps",
    "trains",
    "gardening",
    "a small bakery",
    "mountains",
    "chess",
    "the first day of school",
    "music lessons",
    "recycling",
    "a lighthouse",
    "honeybees",
    "volcanoes",
    "a street market",
    "kites",
    "saving money",
    "a long flight",
    "museums",
    "friendship",
    "a thunderstorm",
    "owls",
    "photography",
    "the desert",
    "a village festival",
    "running shoes",
    "clocks",
    "rivers",
    "board games",
    "a quiet evening",
    "bridges",
    "apples",
    "the night sky",
    "handwriting",
    "a fishing boat",
    "snow",
    "umbrellas",
    "a new job",
    "birthdays",
    "forests",
    "radio",
    "a picnic",
    "elephants",
    "tea",
    "a science fair",
    "castles",
    "the harbour",
    "candles",
    "a marathon",
    "penguins",
    "a bookshop",
    "sunflowers",
    "a road trip",
]
REQUESTS = [
    "Describe {topic}.",
    "Write a few sentences about {topic}.",
    "Tell me something interesting about {topic}.",
    "Give advice about {topic}.",
]
END_WORDS = ["today", "friend", "always", "home", "again"]
KEYWORDS = ["water", "light", "time", "people", "green"]
JSON_KEYS = [["name", "reason"], ["title", "summary"], ["topic", "fact"]]
HELD_OUT_TOPICS = 20  # the last topics: never in a training prompt


def _constraint(kind: str, rng: random.Random) -> tuple[str, dict]:
    """The instruction's wording and its rule (prefs.CHECKS key and value)."""
    if kind == "max_words":
        n = rng.choice([8, 12, 20])
        return f"Answer in at most {n} words.", {"max_words": n}
    if kind == "bullets":
        k = rng.choice([2, 3, 4])
        return (
            f"Answer with exactly {k} bullet points, each line starting with '- '.",
            {"bullets": k},
        )
    if kind == "lowercase":
        return "Write your whole answer in lowercase letters, with no capital letters.", {
            "lowercase": True
        }
    if kind == "ends_with":
        w = rng.choice(END_WORDS)
        return f"End your answer with the word '{w}'.", {"ends_with": w}
    if kind == "include":
        w = rng.choice(KEYWORDS)
        return f"Use the word '{w}' in your answer.", {"include": w}
    keys = rng.choice(JSON_KEYS)
    listed = " and ".join(f'"{k}"' for k in keys)
    return f"Answer only with a JSON object with the keys {listed}.", {"json_keys": keys}


KINDS = ["max_words", "bullets", "lowercase", "ends_with", "include", "json_keys"]
HELD_OUT_KINDS = ["max_words", "bullets", "lowercase", "ends_with", "json_keys"]  # the 5


def instruction_prompts(n: int, held_out: bool, seed: int) -> list[dict]:
    """`n` prompt rows {"prompt", <rule>...}; held-out rows use topics training never sees,
    in equal numbers per constraint kind."""
    rng = random.Random(seed)
    topics = TOPICS[-HELD_OUT_TOPICS:] if held_out else TOPICS[:-HELD_OUT_TOPICS]
    kinds = HELD_OUT_KINDS if held_out else KINDS
    rows = []
    for i in range(n):
        wording, rule = _constraint(kinds[i % len(kinds)], rng)
        request = rng.choice(REQUESTS).format(topic=rng.choice(topics))
        rows.append({"prompt": f"{request} {wording}", **rule})
    return rows


def _tsv_rows(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def sst2(split: str) -> list[tuple[str, str]]:
    """(sentence, "negative"/"positive") rows of an SST-2 file (train_full, dev)."""
    words = {"0": "negative", "1": "positive"}
    return [(r[0].strip(), words[r[1].strip()]) for r in _tsv_rows(DATA / "sst2" / f"{split}.tsv")]


def en_es(split: str) -> list[tuple[str, str]]:
    """(English, Spanish) pairs."""
    return [(r[0].strip(), r[1].strip()) for r in _tsv_rows(DATA / "en-es" / f"{split}.tsv")]


def headed_paragraphs(split: str, max_words: int = 120) -> list[tuple[str, str]]:
    """(paragraph, heading) of WikiText-2: the first paragraph under each `= = ... = =` line,
    cut to `max_words` words, the <unk> markers dropped."""
    rows, heading = [], None
    for line in (DATA / "wikitext-2" / f"{split}.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if m := re.fullmatch(r"= = ([^=]+) = =", line):
            heading = m.group(1).strip()
        elif line and not line.startswith("=") and heading:
            words = [w for w in line.split() if w != "<unk>"][:max_words]
            rows.append((" ".join(words).replace(" @-@ ", "-").replace(" , ", ", "), heading))
            heading = None
    return rows


def sts(split: str) -> list[tuple[str, str, float]]:
    """(sentence 1, sentence 2, score 0-5) of an STS-B file (train, dev, test)."""
    rows = []
    for line in (DATA / "stsb" / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines():
        cells = line.split("\t")
        if len(cells) >= 7:
            rows.append((cells[5].strip(), cells[6].strip(), float(cells[4])))
    return rows


def chat_row(prompt: str, answer: str) -> dict:
    """One row in OpenAI's fine-tuning format."""
    return {
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    }


def mixture(per_task: int, seed: int) -> list[dict]:
    """The SFT rows: `per_task` of each training task, each under a random phrasing, shuffled."""
    rng = random.Random(seed)
    rows = []
    tasks = [
        (sst2("train_full"), SST2_PHRASINGS),
        (en_es("train"), TRANSLATE_PHRASINGS),
        (headed_paragraphs("valid"), HEADING_PHRASINGS),
    ]
    for examples, phrasings in tasks:
        for text, answer in rng.sample(examples, min(per_task, len(examples))):
            rows.append(chat_row(rng.choice(phrasings).format(text=text), answer))
    rng.shuffle(rows)
    return rows
