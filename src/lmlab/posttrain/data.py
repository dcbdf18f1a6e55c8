"""Post-training data: chat rows (OpenAI fine-tuning format, or prompt/completion) and
preference rows (TRL's prompt/chosen/rejected, plain or conversational), read from JSONL,
checked row by row (an error names the line), and tokenized through the model's chat template
with a mask of the tokens the loss counts (the assistant's, never the system's or user's).

Tokens are those of the rendered text cut at turn boundaries: each assistant turn is the text
the template adds after the generation prompt (`<|im_start|>assistant\\n`), up to and including
its end-of-turn token, so the model learns to stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.text.chat_template import ROLES

Messages = list[dict[str, str]]


@dataclass
class Conversation:
    """Messages to render; `trained[i]` says whether message i (an assistant turn) is learned."""

    messages: Messages
    trained: list[bool]
    line: int  # 1-based line of the file it came from


@dataclass
class Preference:
    """A prompt (messages ending with a user turn) and two answers, the chosen one better."""

    prompt: Messages
    chosen: str
    rejected: str
    line: int


@dataclass
class Encoded:
    """Token ids and, per token, whether the loss counts it."""

    ids: list[int]
    mask: list[bool]
    line: int


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; an error names a line that is not one."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LmlabError(f"no such file: {path}") from None
    except UnicodeDecodeError:
        raise LmlabError(f"{path} is not UTF-8 text") from None
    rows = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError:
            raise LmlabError(f"{path} line {number}: not a JSON object") from None
        if not isinstance(row, dict):
            raise LmlabError(f"{path} line {number}: not a JSON object")
        rows.append((number, row))
    if not rows:
        raise LmlabError(f"{path} holds no rows")
    return rows


def _messages(value: object, where: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise LmlabError(f"{where}: needs a non-empty list of {{role, content}} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise LmlabError(f"{where}: message {i + 1} needs a role and a string content")
        if m["role"] not in ROLES:
            raise LmlabError(
                f"{where}: message {i + 1} has the unknown role {m['role']!r} "
                f"(expected {', '.join(ROLES)})"
            )
        out.append(dict(m))
    return out


def _prompt(value: object, where: str) -> Messages:
    """A prompt: a string (one user turn) or messages."""
    if isinstance(value, str):
        if not value.strip():
            raise LmlabError(f"{where}: the prompt is empty")
        return [{"role": "user", "content": value}]
    return _messages(value, where)


def _answer(value: object, where: str, key: str) -> str:
    """An answer: a string, or (conversational) one assistant message in a list."""
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or value[0].get("role") != "assistant":
            raise LmlabError(f"{where}: {key} must be one assistant message")
        value = value[0].get("content")
    if not isinstance(value, str):
        raise LmlabError(f"{where}: {key} must be a string or an assistant message")
    return value


def chat_rows(path: str | Path) -> list[Conversation]:
    """SFT rows: {"messages": [...]} (an assistant message with "weight": 0 is not learned) or
    {"prompt": ..., "completion": ...} (strings, or TRL's conversational lists)."""
    out = []
    for line, row in read_jsonl(path):
        where = f"{path} line {line}"
        if "messages" in row:
            messages = _messages(row["messages"], where)
            trained = [m["role"] == "assistant" and m.get("weight", 1) != 0 for m in messages]
        elif "prompt" in row and "completion" in row:
            prompt = _prompt(row["prompt"], where)
            completion = row["completion"]
            if isinstance(completion, str):
                completion = [{"role": "assistant", "content": completion}]
            completion = _messages(completion, where)
            messages = prompt + completion
            trained = [False] * len(prompt) + [m["role"] == "assistant" for m in completion]
        else:
            raise LmlabError(f'{where}: expected {{"messages": [...]}} or prompt and completion')
        if not any(m["role"] == "assistant" for m in messages):
            raise LmlabError(f"{where}: no assistant message (nothing to learn)")
        if messages[0]["role"] == "assistant":
            raise LmlabError(f"{where}: the conversation starts with an assistant message")
        for m in messages:
            m.pop("weight", None)
        out.append(Conversation(messages, trained, line))
    return out


def preference_rows(path: str | Path) -> list[Preference]:
    """DPO and reward rows: prompt, chosen, rejected (TRL's format, plain or conversational)."""
    out = []
    for line, row in read_jsonl(path):
        where = f"{path} line {line}"
        missing = [k for k in ("prompt", "chosen", "rejected") if k not in row]
        if missing:
            raise LmlabError(f"{where}: needs prompt, chosen and rejected (no {missing[0]})")
        prompt = _prompt(row["prompt"], where)
        if prompt[-1]["role"] == "assistant":
            raise LmlabError(f"{where}: the prompt ends with an assistant message")
        chosen = _answer(row["chosen"], where, "chosen")
        rejected = _answer(row["rejected"], where, "rejected")
        if chosen == rejected:
            raise LmlabError(f"{where}: chosen and rejected are the same answer")
        out.append(Preference(prompt, chosen, rejected, line))
    return out


def encode_conversation(tokenizer, conv: Conversation) -> Encoded:
    """Token ids of the conversation rendered by the chat template; the mask marks the tokens
    of the learned assistant turns (their end-of-turn token included)."""
    ids: list[int] = []
    mask: list[bool] = []
    done = ""  # the text rendered so far
    for i, m in enumerate(conv.messages):
        if m["role"] != "assistant":
            continue
        prefix = tokenizer.render_chat(conv.messages[:i], add_generation_prompt=True)
        whole = tokenizer.render_chat(conv.messages[: i + 1], add_generation_prompt=False)
        if not (prefix.startswith(done) and whole.startswith(prefix)):
            raise LmlabError(
                "the model's chat template does not render a conversation turn by turn "
                "(an earlier turn changes when a later one is added): it cannot be masked"
            )
        turns = ((prefix[len(done) :], False), (whole[len(prefix) :], conv.trained[i]))
        for text, learned in turns:
            piece = tokenizer.encode(text)
            ids += piece
            mask += [learned] * len(piece)
        done = whole
    return Encoded(ids, mask, conv.line)


def encode_answer(tokenizer, prompt: Messages, answer: str, line: int = 0) -> Encoded:
    """A prompt and one answer as a conversation whose answer alone is learned."""
    messages = [*prompt, {"role": "assistant", "content": answer}]
    trained = [False] * len(prompt) + [True]
    return encode_conversation(tokenizer, Conversation(messages, trained, line))


def drop_long(rows: list, max_length: int, length) -> tuple[list, list[int]]:
    """The rows whose length(row) fits in max_length tokens, and the lines of those dropped."""
    kept, dropped = [], []
    for row in rows:
        (kept if length(row) <= max_length else dropped).append(row)
    return kept, [getattr(r, "line", 0) for r in dropped]
