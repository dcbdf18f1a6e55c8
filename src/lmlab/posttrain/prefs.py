"""Making preference data from a model's own samples (RLAIF): for each prompt, sample answers,
rank them by checkable rules (the instruction's constraints, as IFEval states them) or by a
judge LM's verdict, and keep the best as chosen and the worst as rejected.

A prompt row: {"prompt": "...", and for --judge rules one or more constraints}:
  max_words: N           at most N words
  bullets: K             exactly K bullet lines ("- ", "* " or "• ")
  lowercase: true        no capital letter
  ends_with: "word"      the last word (punctuation aside) is this one
  include: "keyword"     the keyword appears (case-insensitive)
  json_keys: ["a", "b"]  the answer is a JSON object with these keys
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.posttrain.data import read_jsonl

JUDGE_PROMPT = (
    "Here is an instruction and an answer to it.\n\nInstruction: {prompt}\n\nAnswer: {answer}"
    "\n\nDoes the answer follow the instruction exactly and well? Reply with yes or no."
)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text)


def _bullets(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(r"\s*([-*•])\s+\S", line))


def _json_keys(text: str, keys) -> bool:
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.S)
    try:
        value = json.loads(fenced.group(1) if fenced else body)
    except ValueError:
        return False
    return isinstance(value, dict) and set(keys) <= set(value)


CHECKS: dict[str, Callable[[str, object], bool]] = {
    "max_words": lambda text, n: 0 < len(_words(text)) <= int(n),
    "bullets": lambda text, k: _bullets(text) == int(k),
    "lowercase": lambda text, on: (text == text.lower()) == bool(on) and bool(text.strip()),
    "ends_with": lambda text, w: bool(_words(text)) and _words(text)[-1].lower() == str(w).lower(),
    "include": lambda text, w: str(w).lower() in text.lower(),
    "json_keys": _json_keys,
}


def constraints(row: dict, where: str) -> dict:
    """The row's constraints (the CHECKS keys it holds); an error when it has none."""
    found = {k: v for k, v in row.items() if k in CHECKS}
    if not found:
        raise LmlabError(f"{where}: no constraint to check (one of {', '.join(CHECKS)})")
    if "json_keys" in found and not (
        isinstance(found["json_keys"], list) and all(isinstance(k, str) for k in found["json_keys"])
    ):
        raise LmlabError(f"{where}: json_keys must be a list of strings")
    return found


def check(text: str, rules: dict) -> dict[str, bool]:
    """Whether `text` meets each constraint."""
    return {name: bool(CHECKS[name](text, value)) for name, value in rules.items()}


@dataclass
class PrefsResult:
    """What `make_prefs` wrote: pairs, and the prompts without one (all samples tied)."""

    out: str
    prompts: int
    pairs: int
    ties: int
    samples: int


def judge_scorer(judge, template: str = JUDGE_PROMPT) -> Callable[[str, str], float]:
    """A judge LM's verdict on (prompt, answer): log P(yes) - log P(no) for its next token."""
    import torch

    from lmlab.decode import render
    from lmlab.models import load_lm

    lm = load_lm(judge)
    tok = lm.tokenizer
    yes = {i for w in ("yes", "Yes", " yes", " Yes") for i in tok.encode(w)[:1]}
    no = {i for w in ("no", "No", " no", " No") for i in tok.encode(w)[:1]}
    if "{prompt}" not in template or "{answer}" not in template:
        raise LmlabError("the judge prompt needs {prompt} and {answer} in it")

    def score(prompt: str, answer: str) -> float:
        text = template.replace("{prompt}", prompt).replace("{answer}", answer)
        ids = render(lm, [{"role": "user", "content": text}])
        state = lm.new_state(1)
        try:
            logits = lm.forward(state, torch.tensor([ids]))[0].float()
        finally:
            lm.release(state)
        logp = torch.log_softmax(logits, -1)
        return (torch.logsumexp(logp[list(yes)], 0) - torch.logsumexp(logp[list(no)], 0)).item()

    return score


def make_prefs(
    prompts: str | Path,
    out: str | Path,
    *,
    model: str = "smollm2-135m-instruct",
    samples: int = 4,
    judge: str = "rules",
    judge_prompt: str = JUDGE_PROMPT,
    max_tokens: int = 128,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    on_prompt: Callable[[int, int], None] | None = None,
) -> PrefsResult:
    """Sample `samples` answers per prompt from `model` (chat), rank them by `judge` ("rules":
    the fraction of the row's constraints met; else a judge LM's yes/no verdict), and write
    TRL-format pairs (the best as chosen, the worst as rejected) to `out`. Prompts whose
    samples all score the same give no pair (counted as ties).

    Example:
        >>> make_prefs("prompts.jsonl", "prefs.jsonl", samples=4, judge="rules")
    """
    from lmlab.decode import chat
    from lmlab.home import atomic_write_text
    from lmlab.models import load_lm

    if samples < 2:
        raise LmlabError("--samples must be at least 2 (a pair needs two answers)")
    rows = read_jsonl(prompts)
    checked = []
    for line, row in rows:
        where = f"{prompts} line {line}"
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise LmlabError(f"{where}: needs a prompt (a string)")
        checked.append((row, constraints(row, where) if judge == "rules" else None))
    lm = load_lm(model)
    verdict = None if judge == "rules" else judge_scorer(judge, judge_prompt)
    lines, ties = [], 0
    for n, (row, rules) in enumerate(checked):
        messages = [{"role": "user", "content": row["prompt"]}]
        texts = [c.text.strip() for c in chat(lm, messages, n=samples, max_tokens=max_tokens,
                                              temperature=temperature, top_p=top_p,
                                              seed=seed + n).choices]  # fmt: skip
        if rules is not None:
            scores = [sum(check(t, rules).values()) / len(rules) for t in texts]
        else:
            scores = [verdict(row["prompt"], t) for t in texts]
        best = max(range(len(texts)), key=lambda i: scores[i])
        worst = min(range(len(texts)), key=lambda i: scores[i])
        if scores[best] == scores[worst] or texts[best] == texts[worst]:
            ties += 1
        else:
            lines.append(json.dumps({"prompt": row["prompt"], "chosen": texts[best],
                                     "rejected": texts[worst], "chosen_score": scores[best],
                                     "rejected_score": scores[worst]},
                                    ensure_ascii=False))  # fmt: skip
        if on_prompt is not None:
            on_prompt(n + 1, len(checked))
    atomic_write_text(Path(out), "".join(line + "\n" for line in lines))
    return PrefsResult(str(out), len(checked), len(lines), ties, samples)
