"""The FastAPI application: which models are served, the routes, the error contract.

    app = create_app(ServerConfig(chat_models=["smollm2-135m-instruct"]))

Each served language model gets an Engine (continuous batching on one thread); each encoder an
EmbeddingBatcher (requests arriving together share one forward pass).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from functools import partial

from fastapi import FastAPI

from lmlab.serve.errors import APIError, install_error_handlers
from lmlab.serve.limits import LimitsMiddleware
from lmlab.serve.protocol import ModelCard, ModelList, SamplingDefaultsCard

log = logging.getLogger("lmlab.serve")


@dataclass
class ServerConfig:
    """What `lmlab serve` serves, and its limits."""

    chat_models: list[str] = field(default_factory=list)
    embedding_models: list[str] = field(default_factory=list)
    backend: str = "auto"
    api_key: str | None = None
    max_body_bytes: int = 2 * 1024 * 1024  # a 10 MB prompt is refused with 413
    max_tokens_limit: int = 4096  # most new tokens one request may ask for
    parallel: int = 16  # sequences generated together per model
    prefill_chunk: int = 128  # most prompt tokens read per engine step
    # compute threads for one sequence decoding alone (llama backend); None: all cores but one
    threads: int | None = None
    # for prompts and batches, and torch; None: `threads` if given (as llama.cpp), else all cores
    threads_batch: int | None = None
    dtype: str = "auto"  # torch backend weights: float16 is fastest alone, bfloat16 in batches
    # what a request's sampling fields left out take: model, llama.cpp or openai
    # (lmlab.sampling_defaults)
    sampling_defaults: str = "model"
    # encoders take the fastest path keeping cosine >= 0.999 to float32 (lmlab.embed.fast)
    fast_embeddings: bool = False
    # speculative decoding of a sequence running alone: "prompt-lookup", or a draft model
    speculative: str | None = None
    draft_model: str | None = None
    num_draft: int | None = None  # most tokens drafted per step (None: the method's default)


class ServedModels:
    """The loaded models by the name clients send as `model`."""

    def __init__(self, config: ServerConfig) -> None:
        from lmlab.models import load_lm
        from lmlab.sampling_defaults import choose_defaults
        from lmlab.seq2seq.serve import is_seq2seq, load_served
        from lmlab.serve.engine import Engine
        from lmlab.speculative import Speculation

        self.created = int(time.time())
        self.lms: dict = {}
        self.sampling: dict = {}  # name -> SamplingDefaults for the fields a request leaves out
        self.engines: dict = {}
        self.encoders: dict = {}
        self.batchers: dict = {}
        import torch

        # Compute threads meet at a barrier after every operation: if the event loop takes one
        # of their cores, the others wait, so the models leave it one (encoders, ONNX Runtime's
        # included, take torch's thread count when they load).
        torch.set_num_threads(batch_threads(config.threads, config.threads_batch))
        on_llama = []
        for spec in config.chat_models:
            if is_seq2seq(spec):  # a translation model: prompt = source (seq2seq/serve.py)
                options, lm = {}, load_served(spec)
            else:
                options = _load_options(spec, config)
                lm = load_lm(spec, backend=config.backend, **options)
            speculation = Speculation.create(
                lm, config.speculative, config.draft_model, config.num_draft, backend=config.backend
            )
            engine = Engine(lm, config.parallel, config.prefill_chunk, speculation)
            if "n_threads" in options and config.threads is None:
                # on the engine's thread, as all of the model's work: llama.cpp's OpenMP
                # threads belong to the thread that first computes, and a second team (the
                # probe's, here) left one client 43 tokens/s instead of 55 (Xeon VM, 2 cores)
                batch = options["n_threads_batch"]
                engine.run_now(partial(pick_decode_threads, threads_batch=batch))
            self.lms[lm.name] = lm
            self.engines[lm.name] = engine
            self.sampling[lm.name] = choose_defaults(lm, config.sampling_defaults)
            on_llama.append("n_threads" in options)
        for spec in config.embedding_models:
            from lmlab.serve.embeddings import EmbeddingBatcher, load_served_encoder

            encoder = load_served_encoder(spec, fast=config.fast_embeddings)
            name = spec if spec in _bundled() else getattr(encoder, "name", str(spec))
            self.encoders[name] = encoder
            self.batchers[name] = EmbeddingBatcher(encoder)
        if on_llama and all(on_llama):
            # llama.cpp computes; torch only samples, one vocabulary-sized row at a time, where
            # a second thread gains nothing and fights llama.cpp's threads for the cores
            torch.set_num_threads(1)

    def names(self) -> list[str]:
        return [*self.lms, *self.encoders]

    def lm(self, name: str):
        if name in self.lms:
            return self.lms[name], self.engines[name]
        raise self.unknown(name, "a chat")

    def card(self, name: str) -> ModelCard:
        """The /v1/models entry of a served model (a language model's with its defaults)."""
        sampling = self.sampling.get(name)
        return ModelCard(
            id=name,
            created=self.created,
            sampling_defaults=SamplingDefaultsCard(**sampling.to_dict()) if sampling else None,
        )

    def encoder(self, name: str):
        if name in self.encoders:
            return self.encoders[name], self.batchers[name]
        raise self.unknown(name, "an embedding")

    def unknown(self, name: str, task: str | None = None) -> APIError:
        """The error for a model that is not served (404), or not served for `task` (400)."""
        if task and name in self.names():
            return APIError(400, f"model {name!r} is not served as {task} model", param="model")
        served = ", ".join(self.names()) or "none"
        return APIError(
            404,
            f"The model {name!r} does not exist or is not served here; served: {served}",
            param="model",
            code="model_not_found",
        )


def _bundled() -> set[str]:
    from lmlab.models import BUNDLED

    return set(BUNDLED)


def _load_options(spec: str, config: ServerConfig) -> dict:
    """llama backend: how many sequences to hold at once, and its threads; torch: the dtype."""
    from lmlab.models import _has_llama_cpp, resolve

    ref = resolve(spec)
    uses_llama = ref.kind == "gguf" and (
        config.backend == "llama" or (config.backend == "auto" and _has_llama_cpp())
    )
    if uses_llama:
        threads, threads_batch = config.threads, config.threads_batch
        return {"max_batch_size": config.parallel, "n_threads": decode_threads(threads),
                "n_threads_batch": batch_threads(threads, threads_batch),
                "workload": "batch"}  # fmt: skip
    if ref.kind in ("gguf", "hf") and config.dtype != "auto":
        return {"dtype": config.dtype}
    return {}


def decode_threads(threads: int | None) -> int:
    """llama.cpp's threads for one token at a time: `threads`, or all cores but one (the
    server then measures whether every core is worth it: `pick_decode_threads`)."""
    return threads or max(1, (os.cpu_count() or 1) - 1)


def pick_decode_threads(lm, threads_batch: int, margin: float = 1.1, steps: int = 12) -> int:
    """Set and return the threads a llama.cpp model decodes one sequence with, measured: all
    cores but one, unless all cores decode it more than `margin` times faster.

    Decoding one sequence is bound by memory. Where one core reads memory about as fast as two
    (an AMD EPYC, 2 cores: 103 vs 109 tokens/s in process), the second thread only waits for the
    core the event loop and the clients use: one client got 91 tokens/s with one thread, 86 with
    two. Where one core cannot (an Intel Xeon VM: 33 vs 53 tokens/s in process), one client got
    31.6 tokens/s with one thread, 45.7 with two. Takes ~0.5 s, at start, on the thread that
    will decode (`Engine.run_now`).
    """
    few, every = decode_threads(None), os.cpu_count() or 1
    if few == every:
        return every
    prompt = lm.tokenizer.encode("The history of the city begins with")
    state = lm.new_state(1)
    best = {few: float("inf"), every: float("inf")}
    try:
        lm.forward_each([state], [prompt])
        for _ in range(2):  # alternated, best of two: a moment of other work counts less
            for n in best:
                lm.set_threads(n, threads_batch)
                start = time.perf_counter()
                for _ in range(steps):
                    lm.forward_each([state], [prompt[-1:]])
                best[n] = min(best[n], time.perf_counter() - start)
    finally:  # its cells freed: the first request finds the cache as it would without it
        lm.release(state, keep=False)
    chosen = every if best[few] > margin * best[every] else few
    lm.set_threads(chosen, threads_batch)
    log.info("%s decodes one sequence on %d %s (measured: %.1f tokens/s on %d, %.1f on %d)",
             lm.name, chosen, "thread" if chosen == 1 else "threads", steps / best[few], few,
             steps / best[every], every)  # fmt: skip
    return chosen


def batch_threads(threads: int | None, threads_batch: int | None) -> int:
    """Threads for prompts, batches and torch: `threads_batch`, else `threads` (as llama.cpp's
    -tb follows -t), else all cores."""
    return threads_batch or threads or os.cpu_count() or 1


def create_app(config: ServerConfig, served: ServedModels | None = None) -> FastAPI:
    """Build the app (loading the models unless `served` is given)."""
    from lmlab.serve import embeddings, generation

    served = served or ServedModels(config)
    app = FastAPI(
        title="lmlab",
        description="OpenAI-compatible API for local language models and encoders.",
        version="0.1.0",
    )
    app.state.served = served
    app.state.config = config
    install_error_handlers(app)
    app.add_middleware(
        LimitsMiddleware, max_body_bytes=config.max_body_bytes, api_key=config.api_key
    )

    @app.get("/health")
    async def health() -> dict:
        running = {name: engine.running for name, engine in served.engines.items()}
        return {"status": "ok", "models": served.names(), "running": running}

    # an encoder's card leaves out the language models' sampling_defaults (not null)
    @app.get("/v1/models", response_model=ModelList, response_model_exclude_none=True)
    async def list_models() -> ModelList:
        return ModelList(data=[served.card(n) for n in served.names()])

    @app.get(
        "/v1/models/{model_id:path}", response_model=ModelCard, response_model_exclude_none=True
    )
    async def get_model(model_id: str) -> ModelCard:
        if model_id not in served.names():
            raise served.unknown(model_id)
        return served.card(model_id)

    app.include_router(generation.router)
    app.include_router(embeddings.router)
    return app
