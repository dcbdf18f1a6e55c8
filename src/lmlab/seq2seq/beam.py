"""Beam search over a batch of sources at once, with GNMT's length penalty.

Each source keeps K hypotheses (rows of one decoder batch of B x K rows, sharing one cache
that `reorder` rearranges as hypotheses are extended). At each step every hypothesis is
extended by every token; of the 2K best extensions of a source, those that end (the end token)
among the first K are finished, and the K best that do not end go on. A source is done when K
of its hypotheses are finished, or at its length bound (its live hypotheses then finish as they
are); it then leaves the batch. This is fairseq's search: with K = 1 it is greedy decoding.

Finished hypotheses are ranked by log P(y | x) / lp(|y|), the length penalty of Wu et al.
2016 (GNMT), lp(n) = ((5 + n) / 6) ** alpha, where n counts the target's tokens including the
end token (alpha 0: the plain log-probability, which favours short translations; GNMT used
0.6 to 0.7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmlab.seq2seq.batching import encode_batch, within_positions
from lmlab.seq2seq.search_options import DEFAULT_ALPHA, check_beam, length_penalty


@dataclass
class Hypothesis:
    """A finished translation: its tokens (without the end token), log P(y | x) and the
    length-penalised score it was ranked by."""

    tokens: list[int]
    log_prob: float
    score: float


@torch.inference_mode()
def beam_search(
    model,
    sources: list[list[int]],
    end_id: int,
    limits: list[int],
    *,
    beam: int = 4,
    alpha: float = DEFAULT_ALPHA,
    start_id: int | None = None,
) -> list[Hypothesis]:
    """The best hypothesis of a beam search of width `beam` for each token-id source; target
    i has at most limits[i] tokens (without the end token) and fits the model's positions."""
    check_beam(beam)
    K, limits = beam, within_positions(model, limits)
    memory, keep = encode_batch(model, sources, end_id)
    device = memory.device
    cache = model.new_cache(memory, keep)  # one row per source, then K rows each
    cache.reorder(torch.arange(len(sources), device=device).repeat_interleave(K))
    live = list(range(len(sources)))  # the source of each group of K rows still searching
    scores = torch.full((len(sources), K), float("-inf"))
    scores[:, 0] = 0.0  # one empty hypothesis per source to start from
    tokens = torch.zeros(len(sources) * K, 0, dtype=torch.long)  # each row's target so far
    start = end_id if start_id is None else start_id  # lmlab's runs start from the end token
    last = torch.full((len(sources) * K, 1), start, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in sources]
    step = 0
    while live:
        step += 1  # the length of the hypotheses this step makes
        logits = model.decode(last, cache=cache, last_only=True)[:, -1].float().cpu()
        logp = torch.log_softmax(logits, dim=-1)
        V = logp.shape[-1]
        extended = (scores[:, :, None] + logp.view(len(live), K, V)).view(len(live), K * V)
        best, where = extended.topk(min(2 * K, K * V), dim=1)
        best, origin, token = best.tolist(), (where // V).tolist(), (where % V).tolist()
        keep_rows, new_scores, new_tokens, still = [], [], [], []
        for g, source in enumerate(live):
            going = []  # (score, row it extends, token)
            for rank, (s, b, t) in enumerate(zip(best[g], origin[g], token[g], strict=True)):
                if s == float("-inf") or len(going) == K:
                    break
                if t == end_id:
                    if rank < K:
                        seq = tokens[g * K + b].tolist()
                        finished[source].append(Hypothesis(seq, s, s / length_penalty(step, alpha)))
                else:
                    going.append((s, g * K + b, t))
            if len(finished[source]) >= K or not going:
                continue
            if step >= limits[source]:  # out of length: the live ones finish as they are
                for s, row, t in going:
                    seq = [*tokens[row].tolist(), t]
                    finished[source].append(Hypothesis(seq, s, s / length_penalty(step, alpha)))
                continue
            while len(going) < K:  # fewer extensions than K (a tiny vocabulary): empty rows
                going.append((float("-inf"), going[0][1], going[0][2]))
            still.append(source)
            for s, row, t in going:
                keep_rows.append(row)
                new_scores.append(s)
                new_tokens.append(t)
        if not still:
            break
        rows = torch.tensor(keep_rows, dtype=torch.long)
        cache.reorder(rows.to(device))
        tokens = torch.cat([tokens[rows], torch.tensor(new_tokens)[:, None]], dim=1)
        scores = torch.tensor(new_scores).view(len(still), K)
        last = torch.tensor(new_tokens, dtype=torch.long, device=device)[:, None]
        live = still
    return [max(hyps, key=lambda h: h.score) for hyps in finished]
