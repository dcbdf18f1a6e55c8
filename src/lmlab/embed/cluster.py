"""Clusters of vectors: k-means, agglomerative (Ward) and HDBSCAN, with silhouette scores.

The silhouette of a point is (b - a) / max(a, b): a its mean cosine distance to its own
cluster, b to the nearest other cluster; the mean over points lies in [-1, 1], higher is
better separated. Members of each cluster are listed nearest its centre first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmlab.errors import LmlabError

METHODS = ("kmeans", "agglomerative", "hdbscan")


@dataclass(repr=False)
class Clustering:
    """Cluster labels (-1: noise, HDBSCAN only), centres and members ordered by closeness
    (its repr: the sizes and silhouette; the arrays are attributes)."""

    method: str
    labels: np.ndarray  # int (n,)
    centres: np.ndarray  # float32 (k, d): the mean unit vector of each cluster
    members: list[list[int]]  # per cluster: row numbers, nearest the centre first
    silhouette: float | None  # None when it is undefined (one cluster, or one per point)

    def __repr__(self) -> str:
        from lmlab.reprs import brief_repr

        sizes = [len(m) for m in self.members]
        return brief_repr(
            self,
            method=self.method,
            clusters=len(self.members),
            texts=len(self.labels),
            sizes=sizes if len(sizes) <= 20 else None,
            noise=int((self.labels == -1).sum()) or None,
            silhouette=self.silhouette,
        )


def cluster(
    vectors: np.ndarray, k: int = 5, *, method: str = "kmeans", seed: int = 0
) -> Clustering:
    """Group rows of `vectors` (n, d) into clusters.

    Args:
        vectors: embeddings; rows are L2-normalized first, so distances are cosine distances.
        k: number of clusters (kmeans, agglomerative); HDBSCAN finds its own number and uses
            k as its smallest cluster size.
        method: kmeans, agglomerative or hdbscan.
        seed: k-means initialisation.

    Example:
        >>> c = cluster(lmlab.encode(texts), k=3)
        >>> c.labels, c.silhouette
    """
    from sklearn import cluster as sk
    from sklearn.metrics import silhouette_score

    if method not in METHODS:
        raise LmlabError(f"method must be one of {', '.join(METHODS)}", param="method")
    x = np.asarray(vectors, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    if k < 2 or (method != "hdbscan" and k > n):
        raise LmlabError(f"k must be between 2 and the number of texts ({n})", param="k")
    if method == "kmeans":
        labels = sk.KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    elif method == "agglomerative":
        labels = sk.AgglomerativeClustering(n_clusters=k).fit_predict(x)
    else:
        labels = sk.HDBSCAN(min_cluster_size=k, copy=True).fit_predict(x)
    found = sorted(set(labels.tolist()) - {-1})
    centres = np.stack([x[labels == c].mean(0) for c in found]) if found else np.zeros((0, 1))
    members = []
    for c, centre in zip(found, centres, strict=True):
        rows = np.flatnonzero(labels == c)
        members.append(rows[np.argsort(-(x[rows] @ centre), kind="stable")].tolist())
    kept = labels != -1
    n_found = len(found)
    silhouette = (
        float(silhouette_score(x[kept], labels[kept], metric="cosine"))
        if 2 <= n_found <= kept.sum() - 1
        else None
    )
    return Clustering(method, labels, centres.astype(np.float32), members, silhouette)
