"""`lmlab classify fit|predict|eval|compare`: classifiers over labelled tables."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lmlab.cli.app import JsonOpt, app, emit_json
from lmlab.cli.ray_options import (
    CpusPerWorkerOpt,
    RayAddressOpt,
    RayOpt,
    WorkersOpt,
    check_ray_options,
    run_on_ray,
)
from lmlab.errors import LmlabError

classify_app = typer.Typer(
    help="Classify documents: fit a classifier, predict, evaluate, compare methods.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(classify_app, name="classify")

DataArg = Annotated[Path, typer.Argument(help="A CSV, TSV, JSONL or Parquet table.")]
FolderArg = Annotated[Path, typer.Argument(help="A folder written by `lmlab classify fit`.")]
TextColOpt = Annotated[
    str | None, typer.Option("--text-col", help="Column of texts (default: guessed by name).")
]
LabelColOpt = Annotated[
    str | None, typer.Option("--label-col", help="Column of labels (default: guessed by name).")
]
# Method options: None means "not given", so only the ones given reach the method.
EncoderOpt = Annotated[
    str | None,
    typer.Option(help="Probes: an encoder name or folder, or bow / tfidf (fitted here)."),
]
PenaltyOpt = Annotated[str | None, typer.Option(help="logit: l2, l1 or none.")]
COpt = Annotated[float | None, typer.Option("--C", help="logit/lasso: inverse penalty strength.")]
ClassWeightOpt = Annotated[
    str | None, typer.Option("--class-weight", help="logit/lasso: balanced.")
]
HiddenOpt = Annotated[int | None, typer.Option(help="mlp: hidden units.")]
EpochsOpt = Annotated[int | None, typer.Option(help="Most passes over the training texts.")]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="Texts per step.")]
FreezeOpt = Annotated[
    str | None, typer.Option(help="finetune: freeze the first K layers, or all (head only).")
]
LoraROpt = Annotated[int | None, typer.Option("--lora-r", help="lora: adapter rank.")]
MaxLengthOpt = Annotated[int | None, typer.Option("--max-length", help="Tokens per text.")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="zero-/few-shot: the language model.")
]
ViaOpt = Annotated[str | None, typer.Option(help="zero-shot: lm or cosine.")]
ShotsOpt = Annotated[int | None, typer.Option(help="few-shot: examples in the prompt.")]
VerbalizersOpt = Annotated[
    str | None,
    typer.Option(help="zero-/few-shot: a word for each label, e.g. 0=negative,1=positive."),
]
SeedOpt = Annotated[int | None, typer.Option(help="Random seed.")]


def _options(**given: Any) -> dict[str, Any]:
    """The method options given on the command line, as TextClassifier keyword arguments."""
    options = {k: v for k, v in given.items() if v is not None}
    if "freeze" in options and options["freeze"] != "all":
        try:
            options["freeze"] = int(options["freeze"])
        except ValueError:
            raise LmlabError("--freeze takes a number of layers or all", param="freeze") from None
    if "verbalizers" in options:
        pairs = [p.partition("=") for p in options["verbalizers"].split(",") if p.strip()]
        if not pairs or any(not label.strip() or not word.strip() for label, _, word in pairs):
            raise LmlabError(
                "--verbalizers takes label=word pairs: 0=negative,1=positive", param="verbalizers"
            )
        options["verbalizers"] = {label.strip(): word.strip() for label, _, word in pairs}
    return options


def _check_options(method: str, options: dict[str, Any], offered: list[str]) -> None:
    """A flag the method does not take is an error listing the flags (of `offered`) it does."""
    from lmlab.classify.classifier import method_options

    accepted = method_options(method)
    wrong = [k for k in options if accepted is not None and k not in accepted]
    if wrong:
        usable = [k for k in offered if k in accepted]
        flags = lambda names: ", ".join("--" + n.replace("_", "-") for n in names)  # noqa: E731
        raise LmlabError(
            f"{flags(wrong)} does not apply to method {method} "
            f"(its options: {flags(usable) or 'none'})",
            param=wrong[0],
        )


def _say_guessed(table) -> None:
    if table.guessed:
        cols = {"text": table.text_col, "label": table.label_col}
        said = ", ".join(f"{what} column {cols[what]!r}" for what in table.guessed)
        print(f"using {said}", file=sys.stderr)


@classify_app.command("fit")
def fit(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The classifier folder to write.")],
    method: Annotated[str, typer.Option(help="logit, lasso, mlp, ... (see compare).")] = "logit",
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    encoder: EncoderOpt = None,
    penalty: PenaltyOpt = None,
    C: COpt = None,
    class_weight: ClassWeightOpt = None,
    hidden: HiddenOpt = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    freeze: FreezeOpt = None,
    lora_r: LoraROpt = None,
    max_length: MaxLengthOpt = None,
    model: ModelOpt = None,
    via: ViaOpt = None,
    shots: ShotsOpt = None,
    verbalizers: VerbalizersOpt = None,
    seed: SeedOpt = None,
    resume: Annotated[
        bool, typer.Option(help="finetune, lora, mlp: continue a fit that was interrupted.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit a classifier on DATA's texts and labels and save it to --out."""
    import shutil

    from lmlab.classify.classifier import TextClassifier
    from lmlab.classify.data import read_labelled
    from lmlab.training.results import TrainingInterrupted

    given = dict(
        encoder=encoder,
        penalty=penalty,
        C=C,
        class_weight=class_weight,
        hidden=hidden,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        freeze=freeze,
        lora_r=lora_r,
        max_length=max_length,
        model=model,
        via=via,
        shots=shots,
        verbalizers=verbalizers,
        seed=seed,
    )
    options = _options(**given)
    _check_options(method, options, list(given))
    table = read_labelled(data, text_col, label_col)
    _say_guessed(table)
    clf = TextClassifier(method, **options)
    # Methods trained in steps checkpoint beside --out, so that Ctrl-C can be resumed; the
    # folder goes once the classifier is saved (a new fit without --resume starts afresh).
    steps = method in ("finetune", "lora", "mlp")
    workdir = out.parent / f".{out.name}.training"
    if resume and not steps:
        raise LmlabError(f"--resume applies to finetune, lora and mlp, not {method}")
    if resume and not workdir.is_dir():
        raise LmlabError(f"nothing to resume for {out}: no interrupted fit was found")
    if steps and not resume:
        shutil.rmtree(workdir, ignore_errors=True)
    loop = {"workdir": workdir, "resume": resume} if steps else {}
    try:
        clf.fit(table.texts, table.labels, progress=not as_json, **loop)
    except TrainingInterrupted as e:
        print(e, file=sys.stderr)
        raise typer.Exit(130) from None
    clf.save(out)
    if steps:  # the training curve stays with the classifier
        for name in ("metrics.jsonl", "loss.png"):
            if (workdir / name).is_file():
                shutil.move(workdir / name, out / name)
        shutil.rmtree(workdir, ignore_errors=True)
    info = clf.method_.info
    summary = {
        "out": str(out),
        "method": method,
        "options": clf.method_.options,
        "classes": list(clf.classes_),
        "n": len(table.texts),
        "fit_seconds": round(clf.fit_seconds_, 3),
        "info": info,
    }
    if as_json:
        emit_json(summary)
        return
    print(
        f"{method}: fitted on {len(table.texts)} texts, {len(clf.classes_)} classes "
        f"({', '.join(clf.classes_)}) in {clf.fit_seconds_:.1f} s; saved to {out}"
    )
    for key, value in info.items():
        if key != "selected_features":
            print(f"  {key}: {value}")
    for row in info.get("selected_features", [])[:20]:
        weights = ", ".join(f"{c} {w:+.3f}" for c, w in row["weights"].items())
        print(f"  {row['feature']}: {weights}")


@classify_app.command("predict")
def predict(
    folder: FolderArg,
    data: Annotated[
        str, typer.Argument(help="A CSV, TSV, JSONL or Parquet table; --ray: also a folder or URL.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="CSV, TSV, JSONL or Parquet (default: CSV on stdout)."),
    ] = None,
    text_col: TextColOpt = None,
    ray: RayOpt = False,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1,
    ray_address: RayAddressOpt = None,
) -> None:
    """Label every text of DATA, with each class's probability.

    The output is the input, every column of it unchanged (ids, gold labels, metadata), then
    `predicted` and one p_<class> column per class. With --ray, OUT is a folder of Parquet
    files (with an id column: the input's, else the row number)."""
    from lmlab.classify.classifier import TextClassifier
    from lmlab.classify.data import read_unlabelled

    check_ray_options(ray, out, ray_address, workers)
    if ray:
        import lmlab.ray

        def build():
            return lmlab.ray.classify(
                str(data), folder, column=text_col, workers=workers, cpus_per_worker=cpus_per_worker
            )

        count = run_on_ray(build, out, ray_address)
        print(f"wrote {count} predictions to {out}/ (Parquet files, with --ray)", file=sys.stderr)
        return
    if out is not None and out.suffix.lower() not in (".csv", ".tsv", ".jsonl", ".parquet"):
        raise LmlabError("--out must end in .csv, .tsv, .jsonl or .parquet", param="out")
    clf = TextClassifier.load(folder)
    table = read_unlabelled(data, text_col)
    _say_guessed(table)
    kept = table.file.names
    added = ["predicted", *(f"p_{c}" for c in clf.classes_)]
    if clash := next((c for c in added if c in kept), None):
        raise LmlabError(
            f"{Path(data).name} has a column {clash!r} already: predict adds the columns "
            f"{', '.join(added)}; rename it"
        )
    proba = clf.predict_proba(table.texts)
    labels = clf.classes_[proba.argmax(axis=1)]
    columns = [*kept, *added]
    records = table.file.records
    rows = [
        [*(_cell(record, c, table.text_col, text) for c in kept), str(label)]
        + [round(float(p), 6) for p in ps]
        for record, text, label, ps in zip(records, table.texts, labels, proba, strict=True)
    ]
    _write_rows(columns, rows, out)
    if out is not None:
        print(f"wrote {len(rows)} predictions to {out}", file=sys.stderr)


def _cell(record: dict, column: str, text_col: str, text: str) -> str:
    """A kept input value as a string (files disagree on types; a missing one is empty)."""
    from lmlab.classify.data import label_text

    if column == text_col:
        return text
    value = record.get(column)
    return "" if value is None else label_text(value)


def _write_rows(columns: list[str], rows: list[list], out: Path | None) -> None:
    from lmlab.home import atomic_file, atomic_write_text

    suffix = out.suffix.lower() if out is not None else ".csv"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
        with atomic_file(out) as tmp:
            pq.write_table(table, tmp)
        return
    if suffix == ".jsonl":
        text = "".join(json.dumps(dict(zip(columns, r, strict=True))) + "\n" for r in rows)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter="\t" if suffix == ".tsv" else ",")
        writer.writerow(columns)
        writer.writerows(rows)
        text = buffer.getvalue()
    if out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(out, text)


@classify_app.command("eval")
def evaluate(
    folder: FolderArg,
    data: DataArg,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    confusion: Annotated[
        Path | None, typer.Option(help="Also draw the confusion matrix (.png, .jpg, .pdf or .svg).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall/F1 and confusion matrix on DATA."""
    from lmlab.classify.classifier import TextClassifier
    from lmlab.classify.data import read_labelled

    if confusion is not None:
        from lmlab.embed.maps import figure_format

        figure_format(confusion)  # a wrong ending fails before the work
    clf = TextClassifier.load(folder)
    table = read_labelled(data, text_col, label_col)
    _say_guessed(table)
    report = clf.evaluate(table.texts, table.labels)
    if confusion is not None:
        report.plot_confusion(confusion)
    if as_json:
        emit_json(report.to_dict())
        return
    print(report)
    if confusion is not None:
        print(f"\nwrote {confusion}")


@classify_app.command("compare")
def compare(
    train: Annotated[Path, typer.Argument(help="The training table.")],
    test: Annotated[Path, typer.Argument(help="The test table (same columns).")],
    methods: Annotated[
        list[str] | None,
        typer.Option(help="Methods to compare: --methods logit lasso mlp (or logit,lasso)."),
    ] = None,
    more_methods: Annotated[
        list[str] | None, typer.Argument(hidden=True, help="More method names.")
    ] = None,
    text_col: TextColOpt = None,
    label_col: LabelColOpt = None,
    limit_train: Annotated[
        int | None, typer.Option("--limit-train", help="Fit on N random training rows.")
    ] = None,
    limit_test: Annotated[
        int | None, typer.Option("--limit-test", help="Score on N random test rows.")
    ] = None,
    encoder: EncoderOpt = None,
    epochs: EpochsOpt = None,
    model: ModelOpt = None,
    shots: ShotsOpt = None,
    verbalizers: VerbalizersOpt = None,
    seed: SeedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit each method on TRAIN, score it on TEST: one table of accuracy, macro-F1, time."""
    from lmlab.classify.compare import compare as run
    from lmlab.classify.compare import subsample
    from lmlab.classify.data import read_labelled
    from lmlab.classify.method import method_class

    names = [m for item in (methods or []) + (more_methods or []) for m in item.split(",") if m]
    if not names:
        raise LmlabError("name the methods to compare: --methods logit lasso mlp", param="methods")
    for name in names:
        method_class(name)
    train_table = read_labelled(train, text_col, label_col)
    _say_guessed(train_table)
    test_table = read_labelled(test, train_table.text_col, train_table.label_col)
    sample_seed = seed or 0
    rows = run(
        subsample(train_table.texts, train_table.labels, limit_train, sample_seed),
        subsample(test_table.texts, test_table.labels, limit_test, sample_seed),
        names,
        options=_options(
            encoder=encoder,
            epochs=epochs,
            model=model,
            shots=shots,
            verbalizers=verbalizers,
            seed=seed,
        ),
        progress=not as_json,
    )
    if as_json:
        emit_json([r.to_dict() for r in rows])
        return
    print(print_table(rows))


def print_table(rows) -> str:
    """The comparison as an aligned text table."""
    lines = [f"{'method':<12} {'accuracy':>8} {'macro-F1':>8} {'fit s':>8}  notes"]
    for r in rows:
        lines.append(
            f"{r.method:<12} {r.accuracy:>8.4f} {r.macro_f1:>8.4f} {r.fit_seconds:>8.1f}  {r.notes}"
        )
    return "\n".join(lines)
