"""Commands over encoders: similarity, embed, index build, search, cluster, map, pca, and
`lmlab train bow|tfidf`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import AllOpt, JsonOpt, app, emit_json, table_rows, train_app
from lmlab.cli.ray_options import (
    CpusPerWorkerOpt,
    RayAddressOpt,
    RayOpt,
    WorkersOpt,
    check_local_input,
    check_ray_options,
    run_on_ray,
)
from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER

index_app = typer.Typer(
    help="Build a search index over a file of texts.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(index_app, name="index")

EncoderOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Encoder: bundled name, model folder or bow/tfidf folder."),
]
StaticOpt = Annotated[
    bool, typer.Option("--static", help="Use the model's input-embedding rows (any LM).")
]
FileArg = Annotated[Path, typer.Argument(help="txt (one text per line), CSV, JSONL or Parquet.")]
# Ray reads folders and URLs too: kept as written (a Path would turn s3://b into s3:/b).
RayFileArg = Annotated[
    str,
    typer.Argument(
        help="txt (one text per line), CSV, JSONL or Parquet; with --ray also a folder or URL."
    ),
]
ColumnOpt = Annotated[
    str | None, typer.Option("--column", "-c", help="Text column of a table (default: text).")
]
DimensionsOpt = Annotated[
    int | None, typer.Option("--dimensions", help="Keep the first k components (re-normalized).")
]
KOpt = Annotated[int, typer.Option("-k", help="Number of clusters.")]
FIGURE_HELP = "The figure to write: .png, .jpg, .pdf or .svg."
EncoderBackendOpt = Annotated[
    str, typer.Option("--backend", help="auto, onnx, int8 (faster; cosine >= 0.99) or torch.")
]


FastOpt = Annotated[
    bool,
    typer.Option(
        "--fast",
        help="The fastest path on this CPU (float32, int8 or bfloat16, measured once) whose "
        "vectors keep cosine >= 0.999 to float32.",
    ),
]


def _encoder(model: str, static: bool = False, backend: str = "auto", fast: bool = False):
    from lmlab.embed.load import load_encoder

    return load_encoder(model, static=static, backend=backend, fast=fast)


@app.command()
def similarity(
    texts: Annotated[list[str], typer.Argument(help="Two or more texts to compare.")],
    model: EncoderOpt = DEFAULT_ENCODER,
    metric: Annotated[str, typer.Option(help="cosine, dot or euclidean (a distance).")] = "cosine",
    static: StaticOpt = False,
    backend: EncoderBackendOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Print the pairwise similarity table of TEXTS."""
    from lmlab.cli.tables import new_table, print_table
    from lmlab.embed.similarity import similarity_table

    matrix = similarity_table(texts, _encoder(model, static, backend), metric)
    if as_json:
        emit_json({"texts": texts, "metric": metric, "matrix": matrix.round(6).tolist()})
        return
    kind = "distances" if metric == "euclidean" else "similarity"  # euclidean: 0 is identical
    table = new_table("", *texts, title=f"{metric} {kind} ({model})")
    for text, row in zip(texts, matrix, strict=True):
        table.add_row(text, *(f"{v:.3f}" for v in row))
    print_table(table)


@app.command()
def embed(
    file: RayFileArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="OUT.npy or OUT.parquet (--ray: a folder).")
    ],
    model: EncoderOpt = DEFAULT_ENCODER,
    column: ColumnOpt = None,
    dimensions: DimensionsOpt = None,
    dtype: Annotated[str, typer.Option(help="float32, or float16 for big corpora.")] = "float32",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per batch.")] = 32,
    static: StaticOpt = False,
    backend: EncoderBackendOpt = "auto",
    fast: FastOpt = False,
    ray: RayOpt = False,
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1,
    ray_address: RayAddressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed every text of FILE (resumable: run it again after an interruption).

    With --ray, FILE may be a folder or a URL (s3://...) and OUT is a folder of Parquet files
    (id, text, embedding), written by an actor pool on a Ray cluster."""
    from lmlab.embed.batch import embed_file

    check_ray_options(ray, out, ray_address, workers)
    if ray and fast:
        raise LmlabError("--fast is not available with --ray; use --backend int8 there")
    if ray:
        import lmlab.ray

        def build():
            return lmlab.ray.embed(
                str(file),
                model=model,
                column=column or "text",
                batch_size=batch_size,
                dimensions=dimensions,
                dtype=dtype,
                backend=backend,
                static=static,
                workers=workers,
                cpus_per_worker=cpus_per_worker,
            )

        check_local_input(file, column or "text")
        count = run_on_ray(build, out, ray_address)
        if as_json:
            emit_json({"out": str(out), "count": count, "dtype": dtype, "ray": True})
        else:
            print(f"wrote {count} vectors ({dtype}) to {out}/ (Parquet files, with --ray)")
        return
    report = embed_file(
        Path(file),
        out,
        model=_encoder(model, static, backend, fast),
        column=column,
        batch_size=batch_size,
        dimensions=dimensions,
        dtype=dtype,
        progress=not as_json,
    )
    if as_json:
        emit_json(asdict(report))
        return
    print(f"wrote {report.count} vectors of {report.dimension} ({report.dtype}) to {report.out}")
    if report.n_truncated:
        print(f"{report.n_truncated} texts were longer than the model's window and truncated")


@index_app.command("build")
def index_build(
    file: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The index folder to write.")],
    model: EncoderOpt = DEFAULT_ENCODER,
    column: ColumnOpt = None,
    approximate: Annotated[
        bool, typer.Option(help="Search an HNSW graph (needs hnswlib) instead of every vector.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Embed FILE's texts and save them as a search index."""
    from lmlab.embed.batch import read_texts
    from lmlab.embed.index import VectorIndex

    rows = read_texts(file, column)
    index = VectorIndex(_encoder(model), approximate=approximate)
    index.add([t for _, t in rows], ids=[i for i, _ in rows])
    index.save(out)
    info = {"out": str(out), "count": len(index), "model": index.encoder.name}
    if as_json:
        emit_json(info)
    else:
        print(f"indexed {len(index)} texts with {index.encoder.name} into {out}")


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="A folder written by `lmlab index build`.")],
    query: Annotated[str, typer.Argument(help="The text to look for.")],
    k: Annotated[int, typer.Option("-k", help="Number of results.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """The K texts of the index most similar to QUERY."""
    from lmlab.embed.index import VectorIndex

    hits = VectorIndex.load(index_dir).search(query, k)
    if as_json:
        emit_json([asdict(h) for h in hits])
        return
    for rank, h in enumerate(hits, 1):
        print(f"{rank:>3}  {h.score:.3f}  [{h.id}] {h.text}")


def _vectors_of(file: Path, model: str, column: str | None, label_column: str | None = None):
    """(texts, vectors, labels) of a text file, or of a file written by `lmlab embed`."""
    from lmlab.embed.batch import read_embeddings, read_texts

    if file.suffix == ".npy" or (file.suffix == ".parquet" and _has_embeddings(file)):
        if label_column is not None:
            raise LmlabError("--color-by a column needs the texts' table, not embeddings")
        _, texts, vectors = read_embeddings(file)
        return texts, vectors, None
    rows = read_texts(file, column, label_column=label_column)
    texts = [r[1] for r in rows]
    labels = [r[2] for r in rows] if label_column else None
    return texts, _encoder(model).encode(texts), labels


def _image_points(model: str, texts: list[str]) -> list[bool] | None:
    """Which items an encoder of images (a CLIP-style run) read as images, for their marker."""
    from lmlab.embed.image_base import ImageEncoder
    from lmlab.images.files import is_image_path

    if not any(map(is_image_path, texts)) or not isinstance(_encoder(model), ImageEncoder):
        return None
    return [is_image_path(t) for t in texts]


def _has_embeddings(path: Path) -> bool:
    import pyarrow.parquet as pq

    return "embedding" in pq.read_schema(path).names


@app.command()
def cluster(
    file: FileArg,
    k: KOpt = 5,
    method: Annotated[str, typer.Option(help="kmeans, agglomerative or hdbscan.")] = "kmeans",
    model: EncoderOpt = DEFAULT_ENCODER,
    column: ColumnOpt = None,
    top: Annotated[int, typer.Option(help="Members shown per cluster.", min=1)] = 5,
    seed: Annotated[int, typer.Option(help="k-means initialisation.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Cluster FILE's texts; list each cluster's members nearest its centre."""
    from lmlab.embed.cluster import cluster as run

    texts, vectors, _ = _vectors_of(file, model, column)
    result = run(vectors, k, method=method, seed=seed)
    clusters = [
        {"cluster": c, "size": len(rows), "members": [texts[i] for i in rows[:top]]}
        for c, rows in enumerate(result.members)
    ]
    noise = int((result.labels == -1).sum())
    if as_json:
        emit_json(
            {
                "method": method,
                "silhouette": result.silhouette,
                "noise": noise,
                "clusters": clusters,
            }
        )
        return
    s = "undefined" if result.silhouette is None else f"{result.silhouette:.3f}"
    print(
        f"{method}: {len(clusters)} clusters, silhouette {s}"
        + (f", {noise} noise" if noise else "")
    )
    for c in clusters:
        print(f"\ncluster {c['cluster']} ({c['size']} texts)")
        for text in c["members"]:
            print(f"  {text}")


@app.command("map")
def map_(
    file: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help=FIGURE_HELP)] = Path("map.png"),
    method: Annotated[str, typer.Option(help="tsne, pca or umap (if installed).")] = "tsne",
    model: EncoderOpt = DEFAULT_ENCODER,
    column: ColumnOpt = None,
    color_by: Annotated[
        str, typer.Option("--color-by", help="'cluster' (k-means, -k) or a label column.")
    ] = "cluster",
    k: KOpt = 5,
    seed: Annotated[int, typer.Option(help="Random seed of the projection.")] = 0,
    show_labels: Annotated[
        bool | None,
        typer.Option(
            "--labels/--no-labels",
            help="Write each text beside its point (default: on maps of 40 texts or fewer).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Draw FILE's texts as a 2-D scatter plot, coloured by cluster or by a column."""
    from lmlab.embed.cluster import cluster as run
    from lmlab.embed.maps import figure_format, plot_map, project

    figure_format(out)  # a wrong ending fails before the embedding
    label_column = None if color_by == "cluster" else color_by
    texts, vectors, labels = _vectors_of(file, model, column, label_column)
    points = project(vectors, method, seed=seed)
    colors = labels
    if colors is None:
        colors = [f"cluster {c}" for c in run(vectors, min(k, len(texts)), seed=seed).labels]
    plot_map(
        points,
        texts,
        out,
        colors=colors,
        title=f"{method} map of {file.name}",
        show_labels=show_labels,
        legend_title=label_column,  # the column's name above its values; clusters say so
        images=_image_points(model, texts),
    )
    if as_json:
        emit_json(
            {
                "out": str(out),
                "points": [
                    {"text": t, "x": float(p[0]), "y": float(p[1]), "color": str(c)}
                    for t, p, c in zip(texts, points, colors, strict=True)
                ],
            }
        )
    else:
        print(f"wrote {out}")


@app.command()
def pca(
    file: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help=FIGURE_HELP)] = Path("pca.png"),
    model: EncoderOpt = DEFAULT_ENCODER,
    column: ColumnOpt = None,
    max_components: Annotated[
        int | None, typer.Option("--max-components", help="Largest k to report.")
    ] = None,
    show_all: AllOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reconstruction error of PCA against the number of components (table and figure)."""
    from lmlab.embed.maps import figure_format, pca_curve, plot_pca_curve

    figure_format(out)
    _, vectors, _ = _vectors_of(file, model, column)
    curve = pca_curve(vectors, max_components)
    plot_pca_curve(curve, out)
    if as_json:
        emit_json({"out": str(out), **asdict(curve)})
        return
    print(f"{'k':>5}  {'error':>10}  {'explained':>9}")
    curve_rows = zip(curve.components, curve.error, curve.explained, strict=True)
    rows, note = table_rows(list(curve_rows), show_all)
    for row in rows:
        print(f"{'…':>5}" if row is None else f"{row[0]:>5}  {row[1]:>10.5f}  {row[2]:>9.1%}")
    if note:
        print(note)
    print(f"wrote {out}")


def _train_bag(kind: str, corpus: Path, out: Path, column, weighting, stop_words, as_json):
    from lmlab.embed.batch import read_texts
    from lmlab.embed.sparse import BagOfWordsEncoder

    texts = [t for _, t in read_texts(corpus, column)]
    encoder = BagOfWordsEncoder.fit(texts, weighting=weighting, stop_words=stop_words)
    encoder.save(out)
    info = {"out": str(out), "kind": kind, "vocabulary": encoder.dimension, "texts": len(texts)}
    if as_json:
        emit_json(info)
    else:
        print(f"{kind}: {encoder.dimension} words from {len(texts)} texts, saved to {out}")


StopWordsOpt = Annotated[
    str | None, typer.Option("--stop-words", help="'english' drops scikit-learn's stop words.")
]


@train_app.command("bow")
def train_bow(
    corpus: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The encoder folder to write.")],
    column: ColumnOpt = None,
    weighting: Annotated[str, typer.Option(help="counts or frequencies.")] = "counts",
    stop_words: StopWordsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a bag-of-words encoder on CORPUS (use it with --model OUT)."""
    if weighting not in ("counts", "frequencies"):
        raise LmlabError("--weighting must be counts or frequencies", param="weighting")
    _train_bag("bow", corpus, out, column, weighting, stop_words, as_json)


@train_app.command("tfidf")
def train_tfidf(
    corpus: FileArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="The encoder folder to write.")],
    column: ColumnOpt = None,
    stop_words: StopWordsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a TF-IDF encoder on CORPUS (use it with --model OUT)."""
    _train_bag("tfidf", corpus, out, column, "tfidf", stop_words, as_json)
