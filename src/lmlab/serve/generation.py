"""POST /v1/chat/completions and /v1/completions: thin routes over the engine."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from lmlab.decode import Chunk, TokenLogprob, encode_prompt, render
from lmlab.errors import LmlabError
from lmlab.sampling import SamplingParams
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


def _params(
    body: SamplingFields,
    lm,
    prompt: list[int],
    *,
    max_tokens: int | None,
    limit: int,
    logprobs: bool,
    top: int,
) -> SamplingParams:
    """SamplingParams for a request, after the context-window check."""
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
    )


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
    """The engine's chunks for one request, as an async stream; stops it if the client leaves."""
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop) or _relays.setdefault(loop, _Relay(loop))
    inbox: asyncio.Queue = asyncio.Queue()
    request = engine.submit(prompt, params, lambda e: relay.send(inbox, e))
    try:
        while True:
            try:
                event = await asyncio.wait_for(inbox.get(), timeout=1.0)
            except TimeoutError:
                if await http.is_disconnected():
                    return
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


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def _chunk_json(chunk: ChatCompletionChunk) -> dict:
    """A chunk as OpenAI sends it: null fields kept, only the delta's absent fields left out."""
    data = chunk.model_dump()
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    return data


def _wire_logprobs(items: list[TokenLogprob] | None) -> ChoiceLogprobs | None:
    if items is None:
        return None
    return ChoiceLogprobs(
        content=[
            WireLogprob(
                token=t.token,
                logprob=t.logprob,
                bytes=list(t.token.encode()),
                top_logprobs=[
                    WireTop(token=a.token, logprob=a.logprob, bytes=list(a.token.encode()))
                    for a in t.top_logprobs
                ],
            )
            for t in items
        ]
    )


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionRequest, http: Request):
    served, config = http.app.state.served, http.app.state.config
    lm, engine = served.lm(body.model)
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    prompt = render(lm, messages)
    params = _params(
        body,
        lm,
        prompt,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        limit=config.max_tokens_limit,
        logprobs=body.logprobs,
        top=body.top_logprobs or 0,
    )
    if body.stream:
        return StreamingResponse(
            _chat_stream(body, engine, prompt, params, http), media_type="text/event-stream"
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
            logprobs=_wire_logprobs(logprobs[i]),
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


async def _chat_stream(body, engine, prompt, params, http) -> AsyncIterator[str]:
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
                logprobs=_wire_logprobs(chunk.logprobs) if body.logprobs else None,
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
            _completion_stream(body, engine, prompts, all_params, base, http),
            media_type="text/event-stream",
        )
    choices, completion = [], 0
    for k, (prompt, params) in enumerate(zip(prompts, all_params, strict=True)):
        texts = [lm.tokenizer.decode(prompt) if body.echo else ""] * params.n
        finish = [None] * params.n
        steps: list[list[TokenLogprob]] = [[] for _ in range(params.n)]
        async for chunk in _events(engine, prompt, params, http):
            texts[chunk.index] += chunk.text
            completion += len(chunk.token_ids)
            finish[chunk.index] = chunk.finish_reason or finish[chunk.index]
            steps[chunk.index].extend(chunk.logprobs or [])
        for i in range(params.n):
            logprobs = _completion_logprobs(steps[i]) if body.logprobs is not None else None
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


def _completion_logprobs(steps: list[TokenLogprob]) -> CompletionLogprobs:
    offsets, at = [], 0
    for s in steps:
        offsets.append(at)
        at += len(s.token)
    return CompletionLogprobs(
        tokens=[s.token for s in steps],
        token_logprobs=[s.logprob for s in steps],
        top_logprobs=[{a.token: a.logprob for a in s.top_logprobs} for s in steps],
        text_offset=offsets,
    )


async def _completion_stream(body, engine, prompts, all_params, base, http) -> AsyncIterator[str]:
    completion = 0
    try:
        for k, (prompt, params) in enumerate(zip(prompts, all_params, strict=True)):
            async for chunk in _events(engine, prompt, params, http):
                completion += len(chunk.token_ids)
                if not chunk.text and not chunk.finish_reason:
                    continue
                logprobs = (
                    _completion_logprobs(chunk.logprobs or [])
                    if body.logprobs is not None
                    else None
                )
                choice = CompletionChoice(
                    index=k * params.n + chunk.index,
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
