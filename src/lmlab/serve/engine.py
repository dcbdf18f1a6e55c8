"""The generation engine: one thread steps every active sequence of every request together.

Requests arrive from many HTTP handlers at once. Rather than serving them one at a time, the
engine keeps a running set of sequences; each step it samples one token for every running
sequence, then reads those tokens and the prompts of sequences joining now in one batched call
(`LanguageModel.forward_each`: on llama.cpp, one `llama_decode`). Sequences join as soon as there
is room and leave as soon as they finish or their client goes away (continuous batching). A
prompt read in the same call as the others' next tokens costs far less than a call of its own
(llama.cpp, 7 running + an 8-token prompt on 2 cores: 40 ms together, 57 ms in two calls).
Prompts are read at most `prefill_chunk` tokens a step (chunked prefill, as vLLM and
llama.cpp's server do): a long prompt joining spreads over several steps, so the running
sequences keep streaming instead of waiting for all of it, and of prompts arriving together the
first get their first token sooner. Before its first piece, a sequence takes the cached cells
of the longest prefix of its prompt another sequence holds (`LanguageModel.share_prefix`) and
reads only the rest: of prompts arriving together with the same instructions, those read in
later steps share what the first ones read.

The running sequences share one KV cache (llama.cpp's cells), which can fill before any one
of them reaches the context length (8 conversations of 1,100 tokens need more than 8,192
cells). When a step finds no room (`CacheFull`), the sequence that joined last is paused, as
vLLM preempts by recomputation: its cells are freed, it goes back to the front of the queue
with its prompt and the tokens it has generated, and the step is tried again without it. No
sequence joins until one leaves; the paused one then reads its tokens again (sharing any
prefix still cached) and goes on sampling where it stopped.

While one sequence runs alone, the engine can decode it speculatively (`lmlab.speculative`:
prompt lookup or a draft model proposes tokens, one forward pass checks them all); with
several running, they step together as above, one token each. A `json_object` request always
steps one token at a time.

Other work on the model (scoring an echoed prompt) runs on the same thread between steps, as a
`Job`: the model is not safe to call from two threads.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lmlab import speculative
from lmlab.decode import Chunk, Sequence, new_sequences
from lmlab.errors import LmlabError
from lmlab.lm.base import CacheFull, LanguageModel, State
from lmlab.sampling import SamplingParams
from lmlab.speculative import DraftModel, PromptLookup, Speculation

log = logging.getLogger("lmlab.serve")

# What the engine hands a request's consumer: a piece of text, the end (None), or an error.
Event = Chunk | Exception | None


@dataclass
class Request:
    """One API request in the engine: n sequences sharing a prompt and a consumer."""

    prompt: list[int]
    params: SamplingParams
    emit: Callable[[Event], None]  # called from the engine thread
    seqs: list[Sequence] = field(default_factory=list)
    cancelled: bool = False
    unfinished: int = 0


@dataclass
class Job:
    """Work on the model between steps: `run(lm)`, whose result (or exception) goes to `emit`.
    It holds a row of the model's state while it runs, so it waits for a free one."""

    run: Callable[[LanguageModel], object]
    emit: Callable[[object], None]  # called from the engine thread


@dataclass
class _Running:
    request: Request
    seq: Sequence
    state: State
    feed: list[int]  # tokens still to read: what is left of the prompt, then each sampled token
    logits: torch.Tensor | None = None  # next-token logits waiting to be sampled
    reading_prompt: bool = True
    fresh: bool = True  # nothing read or shared yet
    proposer: PromptLookup | DraftModel | None = None  # while it decodes speculatively


class Engine:
    """Runs `LanguageModel` generation for concurrent requests on a background thread."""

    def __init__(
        self,
        lm: LanguageModel,
        max_running: int | None = None,
        prefill_chunk: int = 128,
        speculation: Speculation | None = None,
    ) -> None:
        self.lm = lm
        self.max_running = max_running or lm.max_batch_size
        self.prefill_chunk = prefill_chunk  # most prompt tokens read in one step
        self.speculation = speculation  # how a sequence running alone speculates (or None)
        self.running = 0  # sequences being generated now (read by /health)
        self.preempted = 0  # sequences paused so far because the KV cache was full
        self.speculated_tokens = 0  # tokens speculative steps gained: beyond one a step
        self._full = False  # the cache filled up: admit nobody until a sequence leaves
        self._inbox: queue.Queue[Request | Job] = queue.Queue()
        self._jobs: deque[Job] = deque()
        self._thread = threading.Thread(target=self._loop, name="lmlab-engine", daemon=True)
        self._thread.start()

    def submit(self, prompt: list[int], params: SamplingParams, emit: Callable[[Event], None]):
        """Queue a request; `emit` receives its Chunks, then None (or an exception)."""
        request = Request(prompt, params, emit)
        request.seqs = new_sequences(self.lm, prompt, params)
        request.unfinished = len(request.seqs)
        self._inbox.put(request)
        return request

    def call(self, run: Callable[[LanguageModel], object], emit: Callable[[object], None]) -> None:
        """Queue `run(lm)` for the engine thread; `emit` receives its result or exception."""
        self._inbox.put(Job(run, emit))

    def run_now(self, run: Callable[[LanguageModel], object]) -> object:
        """`run(lm)` on the engine thread, waiting for its result: set-up before requests."""
        done: queue.Queue = queue.Queue(maxsize=1)
        self.call(run, done.put)
        result = done.get()
        if isinstance(result, Exception):
            raise result
        return result

    @staticmethod
    def cancel(request: Request) -> None:
        """Stop a request's sequences at the next step (its client went away)."""
        request.cancelled = True

    def _loop(self) -> None:
        waiting: deque[tuple[Request, Sequence]] = deque()
        running: list[_Running] = []
        while True:
            self._collect(waiting, block=not running and not waiting)
            try:
                self._sample(running)
                running = [r for r in running if not self._retire(r)]
                self._run_jobs(running)
                self._admit(waiting, running)
                self.running = len(running)
                if running:
                    self._read(running, waiting)
            except Exception as error:  # a failed batch fails its requests, not the server
                if isinstance(error, LmlabError):  # e.g. a context that cannot fit: one line
                    log.warning("generation step failed: %s", error)
                else:
                    log.exception("generation step failed")
                for r in running:
                    self._fail(r, error)
                running = []
                self.running = 0
                self._full = False  # their cells are free again

    def _collect(self, waiting: deque, block: bool) -> None:
        try:
            item = self._inbox.get(block=block and not self._jobs)
            while True:
                if isinstance(item, Job):
                    self._jobs.append(item)
                else:
                    waiting.extend((item, seq) for seq in item.seqs)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass

    def _run_jobs(self, running: list[_Running]) -> None:
        """Run the waiting jobs while a row is free (a job's error fails it alone)."""
        while self._jobs and len(running) < self.max_running:
            job = self._jobs.popleft()
            try:
                result = job.run(self.lm)
            except Exception as error:
                result = error
            job.emit(result)

    def _admit(self, waiting: deque, running: list[_Running]) -> None:
        """Start waiting sequences while there is room; the next step reads their prompts."""
        while waiting and len(running) < self.max_running and not self._full:
            request, seq = waiting.popleft()
            if request.cancelled:
                self._finish(request)
                continue
            if request.params.seed is not None and not running:
                # alone, a seeded request starts on an empty cache: the same samples whatever
                # came before (with others running, where its cells lie depends on theirs)
                self.lm.forget_released()
            # a paused sequence reads what it had generated, too
            feed = seq.prompt + seq.token_ids
            running.append(_Running(request, seq, self.lm.new_state(1), feed))

    def _read(self, running: list[_Running], waiting: deque) -> None:
        """Read the step's tokens; while the KV cache has no room, pause the sequence that
        joined last (back to the front of the queue) and try again without it."""
        if self.speculation is not None:
            if len(running) == 1 and self._speculates(running[0]):
                return self._speculate(running[0])
            for r in running:  # several running: plain batched steps
                self._close_proposer(r)
        while True:
            try:
                return self._read_step(running)
            except CacheFull:
                if len(running) == 1:  # alone and still no room: its own context is too long
                    raise
                paused = running.pop()
                self.lm.release(paused.state)
                waiting.appendleft((paused.request, paused.seq))
                self.preempted += 1
                self._full = True
                self.running = len(running)

    def _read_step(self, running: list[_Running]) -> None:
        """One batched call: every sampled token, and prompt pieces up to the step's budget."""
        budget = self.prefill_chunk
        step: list[tuple[_Running, list[int]]] = []
        for r in running:
            if r.reading_prompt and budget == 0:
                continue
            if r.fresh:
                r.feed = r.feed[self.lm.share_prefix(r.state, r.feed) :]
                r.fresh = False
            ids = r.feed
            if r.reading_prompt:
                ids = ids[:budget]
                budget -= len(ids)
            step.append((r, ids))
        logits = self.lm.forward_each([r.state for r, _ in step], [ids for _, ids in step])
        for (r, ids), row in zip(step, logits, strict=True):
            r.feed = r.feed[len(ids) :]
            if not r.feed:  # all read: the next token can be sampled
                r.logits, r.reading_prompt = row, False

    @staticmethod
    def _speculates(r: _Running) -> bool:
        """Whether a sequence running alone takes a speculative step: its prompt is read, its
        last token sampled, and it is not constrained to JSON."""
        return not r.reading_prompt and r.logits is None and not r.seq.p.json_object

    def _speculate(self, r: _Running) -> None:
        """One speculative step: read the last token and the drafts, hand out every token kept."""
        if r.proposer is None:
            r.proposer = self.speculation.proposer(self.lm)
        chunks = speculative.step(self.lm, r.state, r.seq, r.proposer, self.speculation.num_draft)
        self.speculated_tokens += len(chunks) - 1
        r.feed = [r.seq.token_ids[-1]]
        for chunk in chunks:
            r.request.emit(chunk)

    @staticmethod
    def _close_proposer(r: _Running) -> None:
        if r.proposer is not None:
            r.proposer.close()
            r.proposer = None

    def _sample(self, running: list[_Running]) -> None:
        """Pick every running sequence's next token, then hand out the chunks together (a
        consumer woken by the first is then woken once for all of them)."""
        out: list[tuple[Request, Event]] = []
        for r in running:
            if r.request.cancelled or r.logits is None:  # gone, or its prompt is not all read
                continue
            try:
                tid, logprob = r.seq.next_token(r.logits)
                out.append((r.request, r.seq.add(tid, logprob)))
            except Exception as error:  # this request's sampling failed: fail it alone
                log.exception("sampling failed")
                r.request.cancelled = True
                out.append((r.request, error))
                continue
            r.feed, r.logits = [tid], None
        for request, event in out:
            request.emit(event)

    def _retire(self, r: _Running) -> bool:
        """Release a sequence that is done (or abandoned); True if it left the running set."""
        if not (r.seq.finish_reason or r.request.cancelled):
            return False
        self._close_proposer(r)
        self.lm.release(r.state)
        self._full = False  # its cells are free again
        self._finish(r.request)
        return True

    def _finish(self, request: Request) -> None:
        request.unfinished -= 1
        if request.unfinished == 0 and not request.cancelled:
            request.emit(None)

    def _fail(self, r: _Running, error: Exception) -> None:
        self._close_proposer(r)
        self.lm.release(r.state)
        if not r.request.cancelled:
            r.request.cancelled = True
            r.request.emit(error)
