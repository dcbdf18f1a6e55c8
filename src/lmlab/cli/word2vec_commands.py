"""`lmlab train word2vec`, `lmlab analogy`, and the word-vector tasks of `lmlab eval`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import JsonOpt, ProgressOpt, ResumeOpt, app, emit_json, train_app
from lmlab.errors import LmlabError


@train_app.command("word2vec")
def train_word2vec_command(
    corpus: Annotated[Path, typer.Argument(help="Text, one sentence per line.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    cbow: Annotated[bool, typer.Option("--cbow", help="CBOW instead of skip-gram.")] = False,
    dim: Annotated[int, typer.Option(help="Vector size.")] = 100,
    window: Annotated[int, typer.Option(help="Context words on each side (at most).")] = 5,
    negative: Annotated[int, typer.Option(help="Noise words per word.")] = 5,
    min_count: Annotated[int, typer.Option("--min-count", help="Drop words seen fewer times.")] = 5,
    epochs: Annotated[int, typer.Option(help="Passes over the corpus.")] = 5,
    sample: Annotated[
        float, typer.Option(help="Frequent-word subsampling threshold (0: none).")
    ] = 1e-3,
    lr: Annotated[
        float | None,
        typer.Option(help="Learning rate, decaying linearly [default: 0.025; CBOW 0.05]."),
    ] = None,
    min_lr: Annotated[float, typer.Option("--min-lr", help="The last learning rate.")] = 0.0001,
    batch_words: Annotated[
        int, typer.Option("--batch-words", help="Corpus words per step (one learning rate).")
    ] = 10_000,
    lowercase: Annotated[bool, typer.Option(help="Lower-case the corpus first.")] = False,
    seed: Annotated[int, typer.Option(help="Same seed, same vectors (with one worker).")] = 1,
    workers: Annotated[
        int | None, typer.Option(help="Threads training at once [default: the cores].")
    ] = None,
    resume: ResumeOpt = False,
    progress: ProgressOpt = True,
    as_json: JsonOpt = False,
) -> None:
    """Train word vectors (word2vec with negative sampling) on CORPUS; write the run to --out."""
    from lmlab.training import TrainingInterrupted
    from lmlab.wordvec.train import train_word2vec

    try:
        result = train_word2vec(corpus, out, cbow=cbow, dim=dim, window=window,
                                negative=negative, min_count=min_count, epochs=epochs,
                                sample=sample, lr=lr, min_lr=min_lr, batch_words=batch_words,
                                lowercase=lowercase, seed=seed, workers=workers, resume=resume,
                                progress=progress and not as_json)  # fmt: skip
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    if as_json:
        emit_json(result.to_dict())
        return
    rate = f"{result.tokens_per_second:,.0f} words/s"
    print(f"{result.steps:,} steps in {result.seconds:.1f} s ({rate}), "
          f"final loss {result.train_loss:.2f}")  # fmt: skip
    print(f"saved in {result.out}")


@app.command("analogy")
def analogy_command(
    run: Annotated[str, typer.Argument(help="A word2vec run.")],
    a: Annotated[str, typer.Argument(help="king")],
    b: Annotated[str, typer.Argument(help="man")],
    c: Annotated[str, typer.Argument(help="woman")],
    top: Annotated[int, typer.Option(help="How many answers.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """A - B + C: the words nearest by cosine (3CosAdd; the three words excluded).

    `lmlab analogy RUN king man woman` answers "man is to king as woman is to ?" (queen)."""
    answers = _vectors(run).analogy(b, a, c, topn=top)
    if as_json:
        emit_json([{"word": w, "cosine": s} for w, s in answers])
        return
    for word, sim in answers:
        print(f"{word}\t{sim:.4f}")


def _vectors(run: str):
    from lmlab.embed.load import load_encoder
    from lmlab.wordvec.vectors import WordVectors

    encoder = load_encoder(run)
    if not isinstance(encoder, WordVectors):
        raise LmlabError(f"{run} is not a word2vec run (lmlab train word2vec)", param="model")
    return encoder


def eval_word_vectors(run: str, path: Path | None, task: str, as_json: bool) -> None:
    """`lmlab eval RUN FILE --task analogy|word-sim`."""
    from lmlab.wordvec.evaluate import evaluate_analogies, evaluate_word_sim

    if path is None:
        raise LmlabError(f"--task {task} needs a FILE of questions or pairs", param="text_file")
    vectors = _vectors(run)
    if task == "analogy":
        result = evaluate_analogies(vectors, path)
    else:
        result = evaluate_word_sim(vectors, path)
    if as_json:
        emit_json({"model": run, "file": str(path), "task": task, **result})
        return
    if task == "analogy":
        print(f"accuracy:  {result['accuracy']:.2f}% of {result['questions']:,} questions")
        print(f"skipped:   {result['skipped_oov']:,} of {result['total']:,} (out of vocabulary)")
        for name, section in result["sections"].items():
            print(f"  {name:<28} {section['accuracy']:6.2f}%  ({section['questions']:,})")
    else:
        print(f"spearman:  {result['spearman']:.2f} (x100)")
        print(f"pearson:   {result['pearson']:.2f} (x100)")
        print(f"pairs:     {result['pairs']:,} of {result['total']:,} "
              f"({100 * result['oov_ratio']:.1f}% out of vocabulary)")  # fmt: skip
