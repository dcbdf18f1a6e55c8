"""Bag-of-words on a hand-made corpus, clusters, PCA reconstruction, maps."""

import numpy as np
import pytest

import lmlab
from lmlab.embed.cluster import cluster
from lmlab.embed.maps import pca_curve, plot_map, plot_pca_curve, project
from lmlab.errors import LmlabError

CORPUS = ["the man bites the dog", "the dog bites the man", "a dog sleeps"]


def test_bag_of_words_counts_are_exact(tmp_path):
    enc = lmlab.BagOfWordsEncoder.fit(CORPUS)
    assert enc.vocabulary == ["bites", "dog", "man", "sleeps", "the"]  # "a": one letter, dropped
    counts = enc.encode(CORPUS, normalize_embeddings=False)
    np.testing.assert_array_equal(counts, [[1, 1, 1, 0, 2], [1, 1, 1, 0, 2], [0, 1, 0, 1, 0]])
    # word order is lost: the lecture's point about bags of words
    assert lmlab.similarity(counts[0], counts[1]) == pytest.approx(1)
    enc.save(tmp_path / "bow")
    loaded = lmlab.load_encoder(tmp_path / "bow")
    np.testing.assert_array_equal(
        loaded.encode(["the the cat"], normalize_embeddings=False), [[0, 0, 0, 0, 2]]
    )


def test_frequencies_and_stop_words():
    enc = lmlab.BagOfWordsEncoder.fit(CORPUS, weighting="frequencies", stop_words="english")
    assert enc.vocabulary == ["bites", "dog", "man", "sleeps"]
    np.testing.assert_allclose(
        enc.encode("the man bites the dog", normalize_embeddings=False), [1 / 3] * 3 + [0]
    )


def test_tfidf_matches_scikit_learn(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    enc = lmlab.BagOfWordsEncoder.fit(CORPUS, weighting="tfidf")
    enc.save(tmp_path / "tfidf")
    loaded = lmlab.load_encoder(tmp_path / "tfidf")
    reference = TfidfVectorizer().fit(CORPUS).transform([*CORPUS, "dog dog man"]).toarray()
    np.testing.assert_allclose(loaded.encode([*CORPUS, "dog dog man"]), reference, atol=1e-6)
    # idf by hand: "dog" is in all 3 texts: ln(4/4) + 1 = 1; "sleeps" in 1: ln(4/2) + 1
    assert loaded.idf[1] == pytest.approx(1) and loaded.idf[3] == pytest.approx(np.log(2) + 1)


def test_bow_bad_input():
    with pytest.raises(LmlabError, match="no text"):
        lmlab.BagOfWordsEncoder.fit(["", "  "])
    with pytest.raises(LmlabError, match="cannot fit"):
        lmlab.BagOfWordsEncoder.fit(["the and of"], stop_words="english")


def _blobs(seed=0):
    """Three well-separated groups of 10 points in 6-d."""
    rng = np.random.default_rng(seed)
    centres = np.eye(6)[:3] * 5
    x = np.concatenate([c + rng.normal(scale=0.3, size=(10, 6)) for c in centres])
    return x, np.repeat([0, 1, 2], 10)


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "hdbscan"])
def test_clusters_recover_separated_groups(method):
    from sklearn.metrics import adjusted_rand_score

    x, truth = _blobs()
    result = cluster(x, 3, method=method)
    assert adjusted_rand_score(truth, result.labels) == pytest.approx(1)
    assert result.silhouette > 0.7
    for rows, centre in zip(result.members, result.centres, strict=True):
        xn = x[rows] / np.linalg.norm(x[rows], axis=1, keepdims=True)
        closeness = xn @ centre
        assert list(closeness) == sorted(closeness, reverse=True)


def test_cluster_bad_k():
    with pytest.raises(LmlabError, match="k must be between 2"):
        cluster(np.eye(3), 5)


def test_pca_error_falls_to_zero_at_full_rank():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8)) @ rng.normal(size=(8, 8))
    curve = pca_curve(x)
    assert curve.components == list(range(1, 9))
    assert all(a > b for a, b in zip(curve.error, curve.error[1:], strict=False))
    assert curve.error[-1] == pytest.approx(0, abs=1e-9)
    for k in (1, 3, 5):  # against an explicit encode -> decode through scikit-learn's PCA
        p = PCA(n_components=k).fit(x)
        recon = p.inverse_transform(p.transform(x))
        assert curve.error[k - 1] == pytest.approx(((x - recon) ** 2).sum() / len(x), rel=1e-6)


def test_maps_write_pngs(tmp_path):
    x, truth = _blobs()
    for method in ("pca", "tsne"):
        points = project(x, method)
        assert points.shape == (30, 2)
        out = plot_map(
            points, [f"p{i}" for i in range(30)], tmp_path / f"{method}.png", colors=truth
        )
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_pca_curve(pca_curve(x), tmp_path / "pca.png").stat().st_size > 1000
    # the format is the one the name asks for; another ending is refused, nothing written
    points = project(x, "pca")
    magic = {
        "m.jpg": b"\xff\xd8\xff",
        "m.JPEG": b"\xff\xd8\xff",
        "m.pdf": b"%PDF",
        "m.svg": b"<?xml",
    }
    for name, start in magic.items():
        assert plot_map(points, ["p"] * 30, tmp_path / name).read_bytes().startswith(start)
    with pytest.raises(LmlabError, match=r"m.gif: a figure must end in .png, .jpg, .pdf or .svg"):
        plot_map(points, ["p"] * 30, tmp_path / "m.gif")
    assert not list(tmp_path.glob("*.gif")) and not list(tmp_path.glob(".*"))
    with pytest.raises(LmlabError, match="method must be one of"):
        project(x, "mds")
