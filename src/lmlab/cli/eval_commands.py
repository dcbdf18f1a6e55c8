"""`lmlab eval`: the perplexity of a text file under any language model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import BackendChoice, BackendOpt, JsonOpt, app, emit_json
from lmlab.errors import LmlabError


def split_file(model: str, split: str) -> Path:
    """MODEL_DIR/<split>.txt, the text a run directory keeps for that split."""
    path = Path(model) / f"{split}.txt"
    if not path.is_file():
        raise LmlabError(
            f"{path} does not exist: pass a TEXT_FILE, or a run directory that keeps {split}.txt",
            param="split",
        )
    return path


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Argument(help="A model: run directory, ARPA file, name, path.")],
    text_file: Annotated[
        Path | None, typer.Argument(help="The text to score, one sentence per line.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Score MODEL/<split>.txt instead (e.g. valid, test).")
    ] = None,
    backend: BackendOpt = BackendChoice.auto,
    window: Annotated[int, typer.Option(help="Tokens per window (pretrained models).")] = 1024,
    stride: Annotated[int, typer.Option(help="Tokens the window advances by.")] = 512,
    beam: Annotated[int, typer.Option(help="Seq2seq runs: beam width (1: greedy).")] = 1,
    task: Annotated[
        str | None,
        typer.Option(
            help="analogy or word-sim (word vectors), sts (encoders); default: perplexity."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Perplexity of TEXT_FILE under MODEL, with tokens scored (and, for word-level models,
    sentences and OOV words).

    N-gram models count as SRILM's `ngram -ppl`: every word and every </s> is scored, <s> is
    not, and words outside the vocabulary are left out (reported as OOV). Runs of `lmlab train`
    score non-overlapping windows of their training length (recurrent ones: one stream), as
    their validation did: `--split valid` gives the final validation loss. Other models score
    the whole text with a sliding window. A sequence-to-sequence run reads a table of pairs
    and reports BLEU, chrF and the references' perplexity.
    """
    from lmlab.evaluate import evaluate_file
    from lmlab.runs import is_run, read_run

    if task is not None:
        return _eval_task(task, model, text_file, as_json)
    if text_file is not None and is_run(Path(model)) and read_run(Path(model))["kind"] == "seq2seq":
        from lmlab.cli.seq2seq_commands import eval_seq2seq  # BLEU, chrF: TEXT_FILE has pairs

        return eval_seq2seq(model, text_file, beam=beam, as_json=as_json)
    if (text_file is None) == (split is None):
        given = "not both" if text_file is not None else "neither was given"
        raise LmlabError(f"give either a TEXT_FILE or --split ({given})", param="text_file")
    path = text_file if text_file is not None else split_file(model, split)
    result = evaluate_file(model, path, window=window, stride=stride, backend=backend.value)
    if as_json:
        emit_json({"model": model, "file": str(path), **result.to_dict()})
        return
    how = "words and </s>; OOV words excluded" if result.convention == "srilm" else "tokens"
    if result.convention.startswith(("windows", "stream")):
        how = f"tokens, {result.convention}"
    print(f"perplexity:    {result.perplexity:.3f}")
    print(f"loss:          {result.loss:.4f} nats/token")
    print(f"tokens scored: {result.tokens:,} ({how})")
    if result.sentences is not None:  # word-level models only: lines and unknown words
        print(f"sentences:     {result.sentences:,}")
    if result.oov is not None:
        scored = "left out" if result.convention == "srilm" else "scored as <unk>"
        print(
            f"OOV:           {result.oov:,} ({100 * result.oov_rate:.2f}% of "
            f"{result.words:,} words; {scored})"
        )


def _eval_task(task: str, model: str, text_file: Path | None, as_json: bool) -> None:
    """`lmlab eval --task`: word-vector and sentence-encoder benchmarks, each in its topic's
    module."""
    if task in ("analogy", "word-sim"):
        from lmlab.cli.word2vec_commands import eval_word_vectors

        return eval_word_vectors(model, text_file, task, as_json)
    if task == "sts":
        from lmlab.cli.contrastive_commands import eval_sts

        return eval_sts(model, text_file, as_json)
    raise LmlabError(f"unknown --task {task!r}; one of: analogy, word-sim, sts", param="task")
