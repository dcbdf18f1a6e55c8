"""POST /v1/chat/completions and /v1/completions: thin routes over the engine."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable

import torch
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lmlab.decode import Chunk, Detokenizer, TokenLogprob, encode_prompt, render, top_logprobs
from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel
from lmlab.sampling import SamplingParams
from lmlab.sampling_defaults import SamplingDefaults
from lmlab.serve.errors import APIError
from lmlab.serve.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Delta,
    SamplingFields,
    Usage,
)
from lmlab.serve.protocol import TokenLogprob as WireLogprob
from lmlab.serve.protocol import TopLogprob as WireTop

router = APIRouter()

DISCONNECT_CHECK = 1.0  # seconds between checks that a request's client is still there
SCORED_PER_CALL = 256  # echoed prompt tokens scored per forward call (T x vocabulary logits)


def _params(
    body: SamplingFields,
    lm,
    prompt: list[int],
    defaults: SamplingDefaults,
    *,
    max_tokens: int | None,
    limit: int,
    logprobs: bool,
    top: int,
) -> SamplingParams:
    """SamplingParams for a request, after the context-window check; the sampling fields it
    leaves out take the served model's `defaults`."""
    room = lm.context_length - len(prompt)
    if room < 1 or (max_tokens is not None and max_tokens > room):
        asked = f" + {max_tokens} new" if max_tokens else ""
        raise APIError(
            400,
            f"This model's maximum context length is {lm.context_length} tokens; the request has "
            f"{len(prompt)} prompt tokens{asked}. Shorten the messages or lower max_tokens.",
            param="messages" if isinstance(body, ChatCompletionRequest) else "prompt",
            code="context_length_exceeded",
        )
    if max_tokens is not None and max_tokens > limit:
        raise APIError(400, f"max_tokens must be at most {limit} here", param="max_tokens")
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return SamplingParams.from_options(
        dict(
            max_tokens=min(max_tokens or room, limit),
            temperature=body.temperature,
            top_p=body.top_p,
            top_k=body.top_k,
            min_p=body.min_p,
            repetition_penalty=body.repetition_penalty,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            stop=stop,
            seed=body.seed,
            n=body.n,
            logprobs=logprobs,
            top_logprobs=top if logprobs else 0,
            json_object=getattr(body, "response_format", None) is not None
            and body.response_format.type == "json_object",
        )
    ).with_defaults(defaults)


class _Relay:
    """Hands the engine thread's events to an event loop, waking it once per burst.

    The engine emits a chunk for every running sequence each step; waking the loop for each
    one would take a core from llama.cpp's threads (which wait for each other after every
    operation) eight times a step instead of once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Queue, object]] = []

    def send(self, inbox: asyncio.Queue, event: object) -> None:
        """Called from the engine thread."""
        with self._lock:
            self._pending.append((inbox, event))
            if len(self._pending) > 1:  # a wake-up is on its way already
                return
        self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for inbox, event in pending:
            inbox.put_nowait(event)


_relays: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def _events(engine, prompt, params, http: Request) -> AsyncIterator[Chunk]:
    """The engine's chunks for one request, as an async stream; stops it if the client leaves.

    The client is checked every DISCONNECT_CHECK seconds whether or not chunks are coming: a
    non-streamed answer sends nothing until the end, so only this check notices a client that
    gave up (a timeout) while its tokens keep coming.
    """
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop) or _relays.setdefault(loop, _Relay(loop))
    inbox: asyncio.Queue = asyncio.Queue()
    request = engine.submit(prompt, params, lambda e: relay.send(inbox, e))
    check_at = loop.time() + DISCONNECT_CHECK
    try:
        while True:
            try:
                event = await asyncio.wait_for(inbox.get(), max(0.0, check_at - loop.time()))
            except TimeoutError:
                event = _NOTHING
            if loop.time() >= check_at:
                if await http.is_disconnected():
                    return
                check_at = loop.time() + DISCONNECT_CHECK
            if event is _NOTHING:
                continue
            if event is None:
                return
            if isinstance(event, LmlabError):
                raise APIError(400, str(event))
            if isinstance(event, Exception):
                raise event
            yield event
    finally:
        engine.cancel(request)


_NOTHING = object()  # no event came before the next disconnection check


async def _on_engine(engine, run: Callable[[LanguageModel], object]):
    """`run(lm)` on the engine's thread, between its steps (the model is not thread-safe)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    engine.call(run, lambda result: loop.call_soon_threadsafe(_resolve, done, result))
    result = await done
    if isinstance(result, LmlabError):
        raise APIError(400, str(result))
    if isinstance(result, Exception):
        raise result
    return result


def _resolve(future: asyncio.Future, result: object) -> None:
    if not future.done():  # the request was cancelled meanwhile
        future.set_result(result)


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _chunk_json(chunk: ChatCompletionChunk) -> dict:
    """A chunk as OpenAI sends it: null fields kept, only the delta's absent fields left out."""
    data = chunk.model_dump()
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    return data


def _wire_logprobs(items: list[TokenLogprob] | None, tokenizer) -> ChoiceLogprobs | None:
    if items is None:
        return None
    return ChoiceLogprobs(
        content=[
            WireLogprob(
                token=t.token,
                logprob=t.logprob,
                bytes=_token_bytes(tokenizer, t.id, t.token),
                top_logprobs=[
                    WireTop(
                        token=a.token,
                        logprob=a.logprob,
                        bytes=_token_bytes(tokenizer, a.id, a.token),
                    )
                    for a in t.top_logprobs
                ],
            )
            for t in items
        ]
    )


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: the byte each character of a vocabulary entry
    stands for (printable bytes stand for themselves, the others for chr(256), chr(257)...)."""
    shown = [*range(33, 127), *range(161, 173), *range(174, 256)]
    hidden = [b for b in range(256) if b not in shown]
    return {chr(b): b for b in shown} | {chr(256 + i): b for i, b in enumerate(hidden)}


_BYTE_OF = _byte_alphabet()
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte-fallback entries


def _token_bytes(tokenizer, token_id: int, text: str) -> list[int]:
    """A token's own bytes. Its decoded text has them, unless the token holds part of a UTF-8
    character (decoded as U+FFFD): those come from its vocabulary entry, which byte-level BPE
    writes in GPT-2's byte alphabet and SentencePiece as <0xNN>."""
    if "\ufffd" in text:
        entry = tokenizer.id_to_token(token_id)
        if tokenizer.word_start == "Ġ" and entry and all(c in _BYTE_OF for c in entry):
            return [_BYTE_OF[c] for c in entry]
        if match := _BYTE_TOKEN.fullmatch(entry):
            return [int(match[1], 16)]
    return list(text.encode())


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionRequest, http: Request):
    served, config = http.app.state.served, http.app.state.config
    lm, engine = served.lm(body.model)
    _check_chat(body)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    prompt = render(lm, messages)
    params = _params(
        body,
        lm,
        prompt,
        served.sampling[body.model],
        max_tokens=body.max_completion_tokens or body.max_tokens,
        limit=config.max_tokens_limit,
        logprobs=body.logprobs,
        top=body.top_logprobs or 0,
    )
    if body.stream:
        return StreamingResponse(
            _chat_stream(body, lm, engine, prompt, params, http),
            media_type="text/event-stream",
        )
    texts = [""] * params.n
    finish = [None] * params.n
    logprobs = [[] if body.logprobs else None for _ in range(params.n)]
    completion = 0
    async for chunk in _events(engine, prompt, params, http):
        texts[chunk.index] += chunk.text
        completion += len(chunk.token_ids)
        finish[chunk.index] = chunk.finish_reason or finish[chunk.index]
        if chunk.logprobs and logprobs[chunk.index] is not None:
            logprobs[chunk.index].extend(chunk.logprobs)
    choices = [
        ChatChoice(
            index=i,
            message=AssistantMessage(content=texts[i]),
            logprobs=_wire_logprobs(logprobs[i], lm.tokenizer),
            finish_reason=finish[i] or "stop",
        )
        for i in range(params.n)
    ]
    usage = Usage(
        prompt_tokens=len(prompt),
        completion_tokens=completion,
        total_tokens=len(prompt) + completion,
    )
    return ChatCompletion(model=body.model, choices=choices, usage=usage)


def _check_chat(body: ChatCompletionRequest) -> None:
    """Combinations OpenAI refuses, or that would break a promise."""
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs set to true", param="top_logprobs")
    json_mode = body.response_format is not None and body.response_format.type == "json_object"
    if json_mode and body.stop:
        raise APIError(
            400,
            "stop cannot be combined with response_format json_object: a stop string could cut "
            "the JSON object short, and the object is guaranteed valid",
            param="stop",
        )


async def _chat_stream(body, lm, engine, prompt, params, http) -> AsyncIterator[str]:
    base = dict(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=body.model)
    for i in range(params.n):
        first = ChatChunkChoice(index=i, delta=Delta(role="assistant", content=""))
        yield _sse(_chunk_json(ChatCompletionChunk(**base, choices=[first])))
    completion = 0
    try:
        async for chunk in _events(engine, prompt, params, http):
            completion += len(chunk.token_ids)
            if not chunk.text and not chunk.finish_reason and not chunk.logprobs:
                continue
            choice = ChatChunkChoice(
                index=chunk.index,
                delta=Delta(content=chunk.text) if chunk.text else Delta(),
                logprobs=_wire_logprobs(chunk.logprobs, lm.tokenizer) if body.logprobs else None,
                finish_reason=chunk.finish_reason,
            )
            yield _sse(_chunk_json(ChatCompletionChunk(**base, choices=[choice])))
    except APIError as e:
        yield _sse(
            {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
        )
        return
    if body.stream_options and body.stream_options.include_usage:
        usage = Usage(
            prompt_tokens=len(prompt),
            completion_tokens=completion,
            total_tokens=len(prompt) + completion,
        )
        yield _sse(_chunk_json(ChatCompletionChunk(**base, choices=[], usage=usage)))
    yield _sse("[DONE]")


def _completion_prompts(lm, prompt) -> list[list[int]]:
    """The request's prompts as token ids (a string, strings, ids, or lists of ids)."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt must not be empty", param="prompt")
    try:
        return [encode_prompt(lm, p) for p in prompt]
    except LmlabError as e:
        code = "context_length_exceeded" if "context window" in str(e) else None
        raise APIError(400, str(e), param="prompt", code=code) from None


@router.post("/v1/completions", response_model=Completion)
async def completions(body: CompletionRequest, http: Request):
    served, config = http.app.state.served, http.app.state.config
    lm, engine = served.lm(body.model)
    if body.suffix:
        raise APIError(400, "suffix is not supported", param="suffix")
    prompts = _completion_prompts(lm, body.prompt)
    all_params = [
        _params(
            body,
            lm,
            p,
            served.sampling[body.model],
            max_tokens=body.max_tokens,
            limit=config.max_tokens_limit,
            logprobs=body.logprobs is not None,
            top=body.logprobs or 0,
        )
        for p in prompts
    ]
    base = dict(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=body.model)
    if body.stream:
        return StreamingResponse(
            _completion_stream(body, lm, engine, prompts, all_params, base, http),
            media_type="text/event-stream",
        )
    choices, completion = [], 0
    for k, (prompt, params) in enumerate(zip(prompts, all_params, strict=True)):
        start, start_logprobs = await _start(body, lm, engine, prompt)
        texts = [start] * params.n
        finish = [None] * params.n
        steps: list[list[TokenLogprob]] = [[] for _ in range(params.n)]
        offsets: list[list[int]] = [[] for _ in range(params.n)]
        async for chunk in _events(engine, prompt, params, http):
            i = chunk.index
            for step in chunk.logprobs or []:
                steps[i].append(step)
                offsets[i].append(len(texts[i]))
            texts[i] += chunk.text
            completion += len(chunk.token_ids)
            finish[i] = chunk.finish_reason or finish[i]
        for i in range(params.n):
            logprobs = None
            if start_logprobs is not None:
                logprobs = _join(start_logprobs, _completion_logprobs(steps[i], offsets[i]))
            choices.append(
                CompletionChoice(
                    index=k * params.n + i,
                    text=texts[i],
                    logprobs=logprobs,
                    finish_reason=finish[i] or "stop",
                )
            )
    prompt_tokens = sum(map(len, prompts))
    usage = Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
    )
    return Completion(**base, choices=choices, usage=usage)


async def _start(
    body: CompletionRequest, lm, engine, prompt: list[int]
) -> tuple[str, CompletionLogprobs | None]:
    """What each choice's text begins with: the prompt if echoed (else nothing), and the legacy
    logprobs of its tokens when logprobs are asked (None when they are not)."""
    if not body.echo:
        return "", None if body.logprobs is None else _completion_logprobs([], [])
    text = lm.tokenizer.decode(prompt)
    if body.logprobs is None:
        return text, None
    top = body.logprobs
    scored = await _on_engine(engine, lambda model: _prompt_logprobs(model, prompt, top))
    first = lm.tokenizer.decode(prompt[:1], skip_special_tokens=False)
    return text, CompletionLogprobs(
        tokens=[first, *(s.token for s in scored)],
        token_logprobs=[None, *(s.logprob for s in scored)],
        top_logprobs=[None, *({a.token: a.logprob for a in s.top_logprobs} for s in scored)],
        text_offset=_offsets(lm.tokenizer, prompt),
    )


def _prompt_logprobs(lm: LanguageModel, prompt: list[int], top: int) -> list[TokenLogprob]:
    """log P(prompt[i] | prompt[:i]) for i >= 1, with the `top` likeliest tokens at each
    position (as OpenAI's echo with logprobs). Read SCORED_PER_CALL tokens at a time, so only
    that many rows of vocabulary-wide logits are held; runs on the engine thread."""
    state = lm.new_state(1)
    out: list[TokenLogprob] = []
    try:
        for at in range(0, len(prompt), SCORED_PER_CALL):
            piece = prompt[at : at + SCORED_PER_CALL]
            logits = lm.forward(state, torch.tensor([piece]), all_positions=True)[0]
            targets = prompt[at + 1 : at + 1 + len(piece)]  # row t predicts the next token
            logp = logits[: len(targets)].log_softmax(dim=-1)
            for row, tid in zip(logp, targets, strict=True):
                token = lm.tokenizer.decode([tid], skip_special_tokens=False)
                alternatives = top_logprobs(row, top, lm.tokenizer) if top else []
                out.append(TokenLogprob(token, tid, float(row[tid]), alternatives))
    finally:
        lm.release(state)
    return out


def _offsets(tokenizer, ids: list[int]) -> list[int]:
    """Where each token's text begins in the decoded text (as the engine streams it: a token
    ending inside a character adds its text with the token that completes it)."""
    detok, offsets, at = Detokenizer(tokenizer), [], 0
    for tid in ids:
        offsets.append(at)
        at += len(detok.add(tid))
    return offsets


def _completion_logprobs(steps: list[TokenLogprob], offsets: list[int]) -> CompletionLogprobs:
    """Legacy logprobs of generated tokens; `offsets`: where each one's text begins in the
    choice's text."""
    return CompletionLogprobs(
        tokens=[s.token for s in steps],
        token_logprobs=[s.logprob for s in steps],
        top_logprobs=[{a.token: a.logprob for a in s.top_logprobs} for s in steps],
        text_offset=offsets,
    )


def _join(a: CompletionLogprobs, b: CompletionLogprobs) -> CompletionLogprobs:
    """`a`'s tokens, then `b`'s (an echoed prompt, then the completion)."""
    fields = CompletionLogprobs.model_fields
    return CompletionLogprobs(**{f: getattr(a, f) + getattr(b, f) for f in fields})


async def _completion_stream(
    body, lm, engine, prompts, all_params, base, http
) -> AsyncIterator[str]:
    completion = 0
    try:
        for k, (prompt, params) in enumerate(zip(prompts, all_params, strict=True)):
            start, start_logprobs = await _start(body, lm, engine, prompt)
            sent = [len(start)] * params.n  # characters of each choice's text sent so far
            if body.echo:  # the prompt first, as its own chunk
                for i in range(params.n):
                    echo = CompletionChoice(
                        index=k * params.n + i, text=start, logprobs=start_logprobs
                    )
                    yield _sse(Completion(**base, choices=[echo]).model_dump())
            async for chunk in _events(engine, prompt, params, http):
                completion += len(chunk.token_ids)
                if not chunk.text and not chunk.finish_reason and not chunk.logprobs:
                    continue
                i = chunk.index
                logprobs = None
                if body.logprobs is not None:
                    steps = chunk.logprobs or []
                    logprobs = _completion_logprobs(steps, [sent[i]] * len(steps))
                sent[i] += len(chunk.text)
                choice = CompletionChoice(
                    index=k * params.n + i,
                    text=chunk.text,
                    logprobs=logprobs,
                    finish_reason=chunk.finish_reason,
                )
                yield _sse(Completion(**base, choices=[choice]).model_dump())
    except APIError as e:
        yield _sse(
            {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}}
        )
        return
    if body.stream_options and body.stream_options.include_usage:
        prompt_tokens = sum(map(len, prompts))
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion,
            total_tokens=prompt_tokens + completion,
        )
        yield _sse(Completion(**base, choices=[], usage=usage).model_dump())
    yield _sse("[DONE]")
