"""2-D maps of embeddings (t-SNE, PCA, UMAP) and PCA as the optimal linear autoencoder.

PCA (lecture 000): among all ways to squeeze centred data X (n, d) through k linear
dimensions and back, projecting on the top k right singular vectors loses least. With
X = U S V^T, the mean squared reconstruction error of k components is
    sum_{i > k} s_i^2 / n,
which falls as k grows and is 0 at full rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError

PROJECTIONS = ("tsne", "pca", "umap")
FIGURE_FORMATS = ("png", "jpg", "jpeg", "pdf", "svg")
LABEL_UP_TO = 40  # points: a map with more is drawn without text labels unless asked


def project(vectors: np.ndarray, method: str = "tsne", *, seed: int = 0) -> np.ndarray:
    """2-D coordinates (n, 2) of the rows of `vectors`.

    t-SNE (scikit-learn) uses cosine distances and a perplexity of min(30, (n - 1) / 3);
    UMAP needs `pip install umap-learn`.
    """
    x = np.asarray(vectors, np.float32)
    if method not in PROJECTIONS:
        raise LmlabError(f"method must be one of {', '.join(PROJECTIONS)}", param="method")
    if len(x) < 3:
        raise LmlabError("a map needs at least 3 texts", param="input")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise LmlabError("--method umap needs umap-learn: pip install umap-learn") from None
        # A seed makes UMAP run on one thread; saying n_jobs=1 keeps it from warning so.
        reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_jobs=1)
        return reducer.fit_transform(x)
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(x) - 1) / 3)
    return TSNE(
        n_components=2, metric="cosine", perplexity=perplexity, init="pca", random_state=seed
    ).fit_transform(x)


def plot_map(
    points: np.ndarray,
    labels: list[str],
    out: str | Path,
    *,
    colors: list | np.ndarray | None = None,
    title: str = "",
    show_labels: bool | None = None,
    legend_title: str | None = None,
    images: list[bool] | None = None,
) -> Path:
    """A scatter plot of `points` (n, 2) coloured by `colors` (cluster numbers or label
    strings), saved as PNG, JPEG, PDF or SVG by `out`'s ending (see `map_figure`)."""
    fig = map_figure(
        points,
        labels,
        colors=colors,
        title=title,
        show_labels=show_labels,
        legend_title=legend_title,
        images=images,
    )
    return save_figure(fig, out)


def map_figure(
    points: np.ndarray,
    labels: list[str],
    *,
    colors: list | np.ndarray | None = None,
    title: str = "",
    show_labels: bool | None = None,
    legend_title: str | None = None,
    images: list[bool] | None = None,
):
    """The matplotlib figure of a map: points coloured by `colors`, the legend titled
    `legend_title` (the column the colours come from), each point labelled with its text (cut
    to 30 characters) when `show_labels`; by default only up to LABEL_UP_TO points, as more
    labels overlap into an unreadable block. `images` marks the points that are images (a map
    of an image-text space): circles, unlabelled; the texts are stars, labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 7), dpi=120)
    is_image = images or [False] * len(points)
    shapes = {False: ("*", 90), True: ("o", 14)} if any(is_image) else {False: ("o", 14)}
    groups = sorted(dict.fromkeys(str(c) for c in colors)) if colors is not None else [None]
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    for g_i, g in enumerate(groups):
        color, label = (None if g is None else cmap(g_i % cmap.N)), g
        for image, (marker, size) in shapes.items():
            rows = [i for i in range(len(points))
                    if is_image[i] == image and (g is None or str(colors[i]) == g)]  # fmt: skip
            if rows:  # the group's name once in the legend, on its first marker
                ax.scatter(points[rows, 0], points[rows, 1], s=size, marker=marker, color=color,
                           label=label)  # fmt: skip
                label = None
    if colors is not None and len(groups) <= 20:
        ax.legend(fontsize=8, loc="best", title=legend_title, title_fontsize=8)
    texts = [i for i in range(len(points)) if not is_image[i]]
    if show_labels is None:
        show_labels = len(texts) <= LABEL_UP_TO
    if show_labels:
        for i in texts:
            ax.annotate(_short(labels[i]), points[i], fontsize=7, alpha=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


@dataclass(repr=False)
class PCACurve:
    """Reconstruction error of PCA with 1..n_components components."""

    components: list[int]
    error: list[float]  # mean squared reconstruction error per text
    explained: list[float]  # fraction of the variance kept

    def __repr__(self) -> str:  # the range and the share kept by 1, 2, ... 10 components
        head = ", ".join(f"{x:.3f}" for x in self.explained[:10])
        more = ", …" if len(self.explained) > 10 else ""
        last = self.components[-1] if self.components else 0
        return f"PCACurve(components=1..{last}, explained=[{head}{more}])"


def pca_curve(vectors: np.ndarray, max_components: int | None = None) -> PCACurve:
    """PCA reconstruction error for k = 1 .. max_components (default: full rank).

    Example:
        >>> c = pca_curve(lmlab.encode(texts))
        >>> c.error[-1]        # 0 at full rank
    """
    x = np.asarray(vectors, np.float64)
    if len(x) < 2:
        raise LmlabError("PCA needs at least 2 texts", param="input")
    if max_components is not None and max_components < 1:
        raise LmlabError(f"max_components must be at least 1, got {max_components}")
    x = x - x.mean(axis=0)  # centre: PCA models deviations from the mean
    s = np.linalg.svd(x, compute_uv=False)  # singular values, largest first
    rank = len(s)
    k_max = rank if max_components is None else min(max_components, rank)
    energy = s**2
    total = energy.sum()
    tail = total - np.cumsum(energy)  # sum_{i > k} s_i^2 for k = 1..rank
    ks = list(range(1, k_max + 1))
    return PCACurve(
        ks,
        [float(max(tail[k - 1], 0.0) / len(x)) for k in ks],
        [float(1 - tail[k - 1] / total) if total > 0 else 1.0 for k in ks],
    )


def plot_pca_curve(curve: PCACurve, out: str | Path) -> Path:
    """A figure (PNG, JPEG, PDF or SVG) of reconstruction error against the number of
    components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot(curve.components, curve.error, marker=".")
    ax.set_xlabel("principal components kept")
    ax.set_ylabel("mean squared reconstruction error")
    ax.set_title("PCA: the optimal linear autoencoder")
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def _short(text: str, n: int = 30) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def figure_format(out: str | Path) -> str:
    """The image format a figure's file name asks for (png, jpg, pdf or svg: matplotlib writes
    them all); another ending is an error, so that m.jpg never holds PNG bytes. Commands call
    it before any work."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise LmlabError(
            f"{Path(out).name}: a figure must end in .png, .jpg, .pdf or .svg", param="out"
        )
    return "jpg" if suffix == "jpeg" else suffix


def save_figure(fig, out: str | Path, *, dpi: int = 120) -> Path:
    """Write the figure atomically (never a half-written file) in the format its name ends in,
    and close it."""
    import matplotlib.pyplot as plt

    from lmlab.home import atomic_file

    out = Path(out)
    try:
        image_format = figure_format(out)
        fig.tight_layout()
        with atomic_file(out) as tmp:
            fig.savefig(tmp, format=image_format, dpi=dpi)
    finally:
        plt.close(fig)
    return out
