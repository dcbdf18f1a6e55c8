"""Decoding a batch of sources at once: greedy, sampling, or beam search (beam.py).

Every encoder-decoder here offers the same four calls, which is all this module uses:
`encode(src, keep)` -> memory, `new_cache(memory, keep)` -> a cache with `.length` and
`.reorder(index)`, and `decode(tgt, cache=cache, last_only=True)` -> next-token logits. A
target starts with the end-of-text token and ends at the next one (training's convention,
objectives/seq2seq.py).

Sources are padded on the right and never attended there, so a sentence decodes the same alone
or in a batch. A sentence whose target has ended leaves the batch (`cache.reorder`), so a batch
costs what its longest translation costs, not batch size x longest.

The length of a translation is bounded relative to its source (search_options.Limits).
"""

from __future__ import annotations

import torch

from lmlab.errors import LmlabError
from lmlab.sampling import SamplingParams, apply_penalties, choose
from lmlab.sampling_defaults import SamplingDefaults
from lmlab.seq2seq.batching import encode_batch, within_positions
from lmlab.seq2seq.search_options import check_beam

# what translation uses for a sampling option left out: greedy decoding, no filtering
GREEDY = SamplingDefaults(temperature=0.0, source="greedy")


@torch.inference_mode()
def sample_batch(
    model,
    sources: list[list[int]],
    end_id: int,
    limits: list[int],
    params: SamplingParams,
    generator: torch.Generator | None = None,
    start_id: int | None = None,
) -> list[list[int]]:
    """One target per source, each token the argmax (params.greedy) or drawn with the
    sampling parameters (those left out: greedy); target i has at most limits[i] tokens
    (without the end token) and fits the model's positions. Targets start from `start_id`
    (default: the end token, as lmlab's runs are trained)."""
    params = params.with_defaults(GREEDY)
    limits = within_positions(model, limits)
    memory, keep = encode_batch(model, sources, end_id)
    cache = model.new_cache(memory, keep)
    n, device = len(sources), memory.device
    out: list[list[int]] = [[] for _ in range(n)]
    rows = list(range(n))  # the source of each row still decoding
    start = end_id if start_id is None else start_id  # lmlab's runs start from the end token
    last = torch.full((n, 1), start, dtype=torch.long, device=device)
    counts = None
    if params.penalized:
        counts = torch.zeros(n, model.config.vocab_size, dtype=torch.long)
    generator = generator or torch.Generator()
    while rows:
        logits = model.decode(last, cache=cache, last_only=True)[:, -1].float().cpu()
        if counts is not None:
            logits = apply_penalties(logits, counts > 0, counts, params)
        chosen = choose(logits, params, generator).tolist()
        going = []
        for i, token in enumerate(chosen):
            source = rows[i]
            if token == end_id:
                continue
            out[source].append(token)
            if len(out[source]) < limits[source]:
                going.append(i)
        if counts is not None:
            counts[torch.arange(len(rows)), torch.tensor(chosen)] += 1
            counts = counts[going]
        if len(going) < len(rows):
            index = torch.tensor(going, dtype=torch.long, device=device)
            if going:
                cache.reorder(index)
            rows = [rows[i] for i in going]
        last = torch.tensor([[chosen[i]] for i in going], dtype=torch.long, device=device)
    return out


def sampling_params(beam: int, options: dict) -> SamplingParams:
    """The sampling parameters of `options` (temperature, top_k, top_p, min_p,
    repetition_penalty; left out: greedy); beam search takes none of them."""
    given = {k: v for k, v in options.items() if v is not None}
    if beam > 1 and given:
        raise LmlabError(
            f"beam search picks the most likely translation; {', '.join(sorted(given))} "
            "is for greedy decoding or sampling (--beam 1)",
            param="beam",
        )
    return SamplingParams(**given).with_defaults(GREEDY)


def in_batches(
    model,
    sources: list[list[int]],
    end_id: int,
    limits: list[int],
    *,
    beam: int,
    alpha: float,
    params: SamplingParams,
    batch_size: int,
    generator: torch.Generator | None = None,
    start_id: int | None = None,
) -> list[list[int]]:
    """The target token ids of every source, decoded `batch_size` sources at a time, sources of
    similar length together (less padding), returned in the order given."""
    from lmlab.seq2seq.beam import beam_search

    check_beam(beam)
    if batch_size < 1:
        raise LmlabError("--batch-size must be at least 1", param="batch_size")
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch, bounds = [sources[i] for i in rows], [limits[i] for i in rows]
        if beam > 1:
            found = [h.tokens for h in beam_search(model, batch, end_id, bounds, beam=beam,
                                                   alpha=alpha, start_id=start_id)]  # fmt: skip
        else:
            found = sample_batch(model, batch, end_id, bounds, params, generator, start_id)
        for i, ids in zip(rows, found, strict=True):
            out[i] = ids
    return out
