"""POST /v1/embeddings, with concurrent requests batched into one forward pass.

Requests that arrive while the encoder is busy wait in a queue; the batcher thread takes all of
them at once, encodes their texts in one `encode` call and hands each request its rows. Under
load that turns many one-sentence requests into a few large batches.
"""

from __future__ import annotations

import asyncio
import base64
import queue
import threading
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request, Response

from lmlab.embed.base import finish
from lmlab.serve.errors import APIError
from lmlab.serve.protocol import EmbeddingData, EmbeddingList, EmbeddingRequest, EmbeddingUsage

router = APIRouter()


def load_served_encoder(spec: str, *, fast: bool = False):
    """The encoder for a served embedding model name or path (`fast`: lmlab.embed.fast)."""
    from lmlab import load_encoder

    return load_encoder(spec, fast=fast)


@dataclass
class _Job:
    texts: list[str] | None
    token_ids: list[list[int]] | None
    done: asyncio.Future
    loop: asyncio.AbstractEventLoop


class EmbeddingBatcher:
    """Encodes the texts of all waiting requests together, on one background thread."""

    def __init__(self, encoder, max_batch: int = 256) -> None:
        self.encoder, self.max_batch = encoder, max_batch
        self._inbox: queue.Queue[_Job] = queue.Queue()
        threading.Thread(target=self._loop, name="lmlab-embed", daemon=True).start()

    async def encode(
        self, texts: list[str] | None = None, token_ids: list[list[int]] | None = None
    ) -> np.ndarray:
        """Unit-length float32 vectors (n, d) for texts or token-id lists."""
        loop = asyncio.get_running_loop()
        job = _Job(texts, token_ids, loop.create_future(), loop)
        self._inbox.put(job)
        return await job.done

    def _loop(self) -> None:
        while True:
            jobs = [self._inbox.get()]
            size = len(jobs[0].texts or jobs[0].token_ids)
            while size < self.max_batch:
                try:
                    job = self._inbox.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job.texts or job.token_ids)
            for kind in ("texts", "token_ids"):
                self._run([j for j in jobs if getattr(j, kind) is not None], kind)

    def _run(self, jobs: list[_Job], kind: str) -> None:
        if not jobs:
            return
        items = [item for j in jobs for item in getattr(j, kind)]
        try:
            if kind == "texts":
                vectors = self.encoder.encode_with_stats(items).vectors
            else:
                vectors = self.encoder.encode_token_ids(items).vectors
        except Exception as error:  # handed to each waiting request
            for j in jobs:
                j.loop.call_soon_threadsafe(_settle, j.done, None, error)
            return
        at = 0
        for j in jobs:
            n = len(getattr(j, kind))
            j.loop.call_soon_threadsafe(_settle, j.done, vectors[at : at + n], None)
            at += n


def _settle(future: asyncio.Future, result, error) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _inputs(body: EmbeddingRequest) -> tuple[list[str] | None, list[list[int]] | None]:
    data = body.input
    if isinstance(data, str):
        data = [data]
    if not data:
        raise APIError(400, "input must not be empty", param="input")
    if isinstance(data[0], int):
        data = [data]
    if isinstance(data[0], str):
        if any(not text for text in data):
            raise APIError(400, "input must not contain empty strings", param="input")
        return data, None
    if any(not ids for ids in data):
        raise APIError(400, "input must not contain empty token arrays", param="input")
    return None, data


def _embedded_tokens(encoder, lengths: list[int]) -> int:
    """Tokens the encoder reads of inputs this long: as the library, it cuts each input to its
    window, which holds the [CLS]/[SEP] frame too (not counted, as OpenAI counts the input)."""
    if encoder.max_length is None:
        return sum(lengths)
    frame = len(encoder.tokenizer.encode("", add_special_tokens=True))
    room = encoder.max_length - frame
    return sum(min(n, room) for n in lengths)


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def embeddings(body: EmbeddingRequest, http: Request):
    encoder, batcher = http.app.state.served.encoder(body.model)
    texts, token_ids = _inputs(body)
    if token_ids is not None:
        vocab = encoder.tokenizer.vocab_size
        if any(not 0 <= t < vocab for ids in token_ids for t in ids):
            raise APIError(400, f"token ids must be in [0, {vocab})", param="input")
    d = encoder.dimension
    if body.dimensions is not None and not 1 <= body.dimensions <= d:
        raise APIError(400, f"dimensions must be between 1 and {d}", param="dimensions")
    vectors = await batcher.encode(texts, token_ids)
    vectors = finish(vectors, body.dimensions, normalize=True)  # OpenAI: cut, then re-normalize
    lengths = [len(ids) for ids in token_ids or encoder.tokenizer.encode_batch(texts)]
    prompt_tokens = _embedded_tokens(encoder, lengths)
    data = [
        EmbeddingData(
            index=i,
            embedding=base64.b64encode(v.tobytes()).decode()
            if body.encoding_format == "base64"
            else v.tolist(),
        )
        for i, v in enumerate(vectors)
    ]
    usage = EmbeddingUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
    # serialized by pydantic's Rust core: FastAPI would check the model again and write its
    # hundreds of floats through Python's json, a good part of a one-sentence request's time
    body_json = EmbeddingList(data=data, model=body.model, usage=usage).model_dump_json()
    return Response(content=body_json, media_type="application/json")
