"""Render chat messages with a model's Jinja chat template, as Hugging Face does.

The same sandboxed Jinja environment and globals as `transformers` (trim_blocks, lstrip_blocks,
`raise_exception`, `strftime_now`), so a template renders here exactly as it does there.
Models without a template (n-gram and small from-scratch models) get PLAIN_TEMPLATE.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime

from lmlab.errors import LmlabError

ROLES = ("system", "user", "assistant")

# A readable fallback for models trained without chat turns: "User: ...\nAssistant:".
PLAIN_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _raise(message: str) -> None:
    raise LmlabError(f"chat template: {message}")


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except TemplateSyntaxError as e:
        raise LmlabError(f"the model's chat template does not parse: {e}") from None


def check_messages(messages: object) -> list[dict[str, str]]:
    """Validate OpenAI-style messages; return them as plain dicts with role and content."""
    if not isinstance(messages, list) or not messages:
        raise LmlabError("messages must be a non-empty list of {role, content}", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise LmlabError(f"messages[{i}] needs 'role' and 'content'", param=f"messages[{i}]")
        if m["role"] not in ROLES:
            raise LmlabError(
                f"messages[{i}].role is {m['role']!r}; expected one of {', '.join(ROLES)}",
                param=f"messages[{i}].role",
            )
        if not isinstance(m["content"], str):
            raise LmlabError(f"messages[{i}].content must be a string", param=f"messages[{i}]")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def render_chat(
    template: str | None,
    messages: list[dict[str, str]],
    *,
    add_generation_prompt: bool = True,
    **special_tokens: str | None,
) -> str:
    """Render `messages` with `template` (PLAIN_TEMPLATE when None) to the prompt text."""
    return _compile(template or PLAIN_TEMPLATE).render(
        messages=check_messages(messages),
        add_generation_prompt=add_generation_prompt,
        **special_tokens,
    )
