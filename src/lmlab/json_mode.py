"""Constrained decoding that guarantees one valid JSON object (OpenAI's `json_object` mode).

How: a character-level pushdown automaton for JSON (RFC 8259) tracks the text generated so far.
At each step the sampled token is checked by feeding its characters to a copy of the automaton;
a token that would make the text an invalid JSON prefix is masked out and the token is drawn
again (so the draw follows the model's distribution restricted to valid tokens). End-of-text is
allowed only once the object is closed, and generation stops as soon as it is. Only a
`max_tokens` cut can leave the object unfinished (finish_reason "length"), as with OpenAI.
"""

from __future__ import annotations

import copy
import re

_WS = " \t\n\r"
_ESCAPES = '"\\/bfnrtu'
_HEX = "0123456789abcdefABCDEF"
_MAX_WS_RUN = 16  # a model looping on newlines is stopped by the constraint, not by the budget


class JsonObjectPrefix:
    """Accepts exactly the prefixes of `ws* object ws*`. Feed characters; copy to look ahead."""

    def __init__(self) -> None:
        self.stack: list[str] = []  # open containers: "{" or "["
        self.mode = "start"  # what the next character may be (see `feed`)
        self.literal = ""  # rest of true/false/null being spelled
        self.hex_left = 0  # hex digits left in a \uXXXX escape
        self.escaped = False  # the last string character was a backslash
        self.in_key = False  # the open string is an object key
        self.number = ""  # the number being written
        self.ws_run = 0  # whitespace characters in a row
        self.complete = False

    def copy(self) -> JsonObjectPrefix:
        return copy.copy(self) if not self.stack else _copy_with_stack(self)

    def feed_text(self, text: str) -> bool:
        """Feed characters; False (and the state is then invalid) at the first that cannot come."""
        return all(self.feed(ch) for ch in text)

    def feed(self, ch: str) -> bool:
        mode = self.mode
        if mode == "string":
            return self._string(ch)
        if mode == "number":
            if ch in "0123456789+-.eE":
                return self._number(ch)
            if not _number_complete(self.number):
                return False
            self.mode = "after_value"
            return self._after_value(ch)
        if mode == "literal":
            if not self.literal or ch != self.literal[0]:
                return False
            self.literal = self.literal[1:]
            if not self.literal:
                self.mode = "after_value"
            return True
        if ch in _WS:
            self.ws_run += 1
            return self.ws_run <= _MAX_WS_RUN
        self.ws_run = 0
        if mode == "start":
            if ch != "{":
                return False
            self.stack.append("{")
            self.mode = "key_or_close"
            return True
        if mode == "done":
            return False
        if mode in ("key_or_close", "key"):
            if ch == "}" and mode == "key_or_close":
                return self._close("{")
            if ch == '"':
                self.mode, self.in_key = "string", True
                return True
            return False
        if mode == "colon":
            if ch == ":":
                self.mode = "value"
                return True
            return False
        if mode in ("value", "value_or_close"):
            if ch == "]" and mode == "value_or_close":
                return self._close("[")
            return self._value(ch)
        if mode == "after_value":
            return self._after_value(ch)
        return False

    def _value(self, ch: str) -> bool:
        if ch == "{":
            self.stack.append("{")
            self.mode = "key_or_close"
        elif ch == "[":
            self.stack.append("[")
            self.mode = "value_or_close"
        elif ch == '"':
            self.mode, self.in_key = "string", False
        elif ch in "-0123456789":
            self.mode, self.number = "number", ch
        elif ch in "tfn":
            self.mode, self.literal = "literal", {"t": "rue", "f": "alse", "n": "ull"}[ch]
        else:
            return False
        return True

    def _string(self, ch: str) -> bool:
        if self.hex_left:
            if ch not in _HEX:
                return False
            self.hex_left -= 1
            return True
        if self.escaped:
            self.escaped = False
            if ch not in _ESCAPES:
                return False
            self.hex_left = 4 if ch == "u" else 0
            return True
        if ch == "\\":
            self.escaped = True
            return True
        if ch == '"':
            self.mode = "colon" if self.in_key else "after_value"
            return True
        return ch >= " "  # raw control characters are not allowed inside JSON strings

    def _number(self, ch: str) -> bool:
        """Grow the number token; valid while it is a prefix of -?int(.digits)?([eE][+-]?digits)?"""
        candidate = self.number + ch
        if not _number_prefix(candidate):
            return False
        self.number = candidate
        return True

    def _after_value(self, ch: str) -> bool:
        if ch in _WS:
            self.ws_run += 1
            return self.ws_run <= _MAX_WS_RUN
        self.ws_run = 0
        top = self.stack[-1] if self.stack else None
        if ch == ",":
            self.mode = "key" if top == "{" else "value"
            return True
        if ch == "}" and top == "{":
            return self._close("{")
        if ch == "]" and top == "[":
            return self._close("[")
        return False

    def _close(self, kind: str) -> bool:
        self.stack.pop()
        if self.stack:
            self.mode = "after_value"
        else:
            self.mode, self.complete = "done", True
        return True


def _copy_with_stack(state: JsonObjectPrefix) -> JsonObjectPrefix:
    new = copy.copy(state)
    new.stack = list(state.stack)
    return new


# A JSON number, and the texts that can still grow into one ("-", "1.", "2e+", ...).
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NUMBER_PREFIX = re.compile(r"-?(?:(?:0|[1-9]\d*)(?:\.(?:\d+(?:[eE][+-]?\d*)?)?|[eE][+-]?\d*)?)?")


def _number_prefix(text: str) -> bool:
    return _NUMBER_PREFIX.fullmatch(text) is not None


def _number_complete(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None
