"""Evaluating a sequence-to-sequence run on a table of pairs (`lmlab eval RUN test.tsv`).

Two views of the same model: how well it translates (BLEU and chrF of its translations
against the references, by sacrebleu with its default settings, so the figures compare with
published ones; and BLEU by source length in words, where a fixed-size encoder state is said to
fail on long sources), and how likely it finds the references (the conditional cross-entropy
of the reference tokens, teacher-forced, and its perplexity).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmlab.errors import LmlabError

LENGTH_BINS = ((1, 10), (11, 20), (21, 40))  # source words


@dataclass
class TranslationEval:
    """Scores of a run's translations of a table's sources against its targets."""

    bleu: float
    chrf: float
    loss: float  # nats per reference token (its end token included), teacher-forced
    perplexity: float
    pairs: int
    tokens: int  # reference tokens scored
    beam: int
    bleu_by_length: dict[str, float | None] = field(default_factory=dict)  # "1-10": BLEU
    pairs_by_length: dict[str, int] = field(default_factory=dict)
    truncated_sources: int = 0
    truncated_targets: int = 0
    translations: list[str] = field(default_factory=list, repr=False)

    def to_dict(self, *, translations: bool = False) -> dict:
        data = asdict(self)
        if not translations:
            data.pop("translations")
        return data


@torch.inference_mode()
def pair_log_probs(
    s2s, sources: list[str], targets: list[str], *, batch_size: int = 32, truncate: bool = False
) -> list[tuple[float, int]]:
    """(log P(target | source), tokens scored) of each pair, teacher-forced: the target's
    tokens and its end token. A side longer than the model reads: an error, or cut when
    `truncate`."""
    from lmlab.training.objectives.seq2seq import IGNORE, pair_batch

    if len(sources) != len(targets):
        raise LmlabError(f"{len(sources)} sources but {len(targets)} targets")
    src_ids, _ = s2s.source_token_ids(sources, truncate=truncate)
    tgt_ids, _ = s2s.target_token_ids(targets, truncate=truncate)
    model, device = s2s.model, next(s2s.model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(src_ids[i]) + len(tgt_ids[i]))
    out: list[tuple[float, int]] = [(0.0, 0)] * len(sources)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = pair_batch(
            [src_ids[i] for i in rows], [tgt_ids[i] for i in rows], s2s.end_id, s2s.start_id
        )
        src, keep, tgt_in, labels = (x.to(device) for x in batch)
        logits = model.decode(tgt_in, model.encode(src, keep), keep).float()
        logp = torch.log_softmax(logits, dim=-1)
        scored = labels != IGNORE
        picked = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * scored
        for i, lp, n in zip(rows, picked.sum(1).tolist(), scored.sum(1).tolist(), strict=True):
            out[i] = (lp, n)
    return out


def length_bin(words: int) -> str | None:
    """The source-length bin ("1-10", "11-20", "21-40") of a source of `words` words."""
    for low, high in LENGTH_BINS:
        if low <= words <= high:
            return f"{low}-{high}"
    return None


def evaluate_translation(
    s2s,
    table: str | Path,
    *,
    source_col: str | None = None,
    target_col: str | None = None,
    beam: int = 1,
    batch_size: int = 32,
    progress: bool = True,
    **options,
) -> TranslationEval:
    """Translate the sources of `table` (columns `source_col` and `target_col`; default: its
    only two) and score the translations and the references; `options` go to `Seq2Seq.translate`."""
    import sacrebleu

    from lmlab.progress import task
    from lmlab.seq2seq.data import read_pairs

    pairs = read_pairs(table, source_col, target_col)
    sources, targets = pairs.sources, pairs.targets
    _, cut_sources = s2s.source_token_ids(sources, truncate=True)
    _, cut_targets = s2s.target_token_ids(targets, truncate=True)
    scored = pair_log_probs(s2s, sources, targets, batch_size=batch_size, truncate=True)
    translations: list[str] = []
    chunk = batch_size * 4
    with task(len(sources), unit="sentences", desc="translating", progress=progress) as advance:
        for start in range(0, len(sources), chunk):
            part = sources[start : start + chunk]
            translations += s2s.translate(part, beam=beam, batch_size=batch_size, truncate=True,
                                          **options)  # fmt: skip
            advance(len(part))
    tokens = sum(n for _, n in scored)
    loss = -sum(lp for lp, _ in scored) / max(tokens, 1)
    by_length: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for low, high in LENGTH_BINS:
        name = f"{low}-{high}"
        rows = [i for i, s in enumerate(sources) if length_bin(len(s.split())) == name]
        counts[name] = len(rows)
        by_length[name] = (
            sacrebleu.corpus_bleu(
                [translations[i] for i in rows], [[targets[i] for i in rows]]
            ).score
            if rows
            else None
        )
    return TranslationEval(
        bleu=sacrebleu.corpus_bleu(translations, [targets]).score,
        chrf=sacrebleu.corpus_chrf(translations, [targets]).score,
        loss=loss,
        perplexity=math.exp(min(loss, 700.0)),
        pairs=len(sources),
        tokens=tokens,
        beam=beam,
        bleu_by_length=by_length,
        pairs_by_length=counts,
        truncated_sources=cut_sources,
        truncated_targets=cut_targets,
        translations=translations,
    )
