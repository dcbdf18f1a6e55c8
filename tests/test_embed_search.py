"""Similarity metrics against scikit-learn, exact search against brute force, index save/load."""

import numpy as np
import pytest

import lmlab
from lmlab.embed.index import VectorIndex
from lmlab.embed.similarity import cosine, dot, euclidean
from lmlab.errors import LmlabError

TEXTS = [
    "The central bank raised interest rates.",
    "Inflation fell to two percent.",
    "The cat sat on the mat.",
    "Kittens like to sleep in the sun.",
    "The striker scored twice in the final.",
    "The match ended in a draw.",
    "Parliament passed the budget.",
    "Voters went to the polls on Sunday.",
]


@pytest.fixture(scope="module")
def encoder():
    return lmlab.load_encoder()


def test_metrics_match_scikit_learn():
    from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(3, 7))
    np.testing.assert_allclose(cosine(a, b), cosine_similarity(a, b), atol=1e-12)
    np.testing.assert_allclose(euclidean(a, b), euclidean_distances(a, b), atol=1e-10)
    np.testing.assert_allclose(dot(a, b), a @ b.T)
    assert lmlab.similarity(a[0], b[0], metric="dot") == pytest.approx(a[0] @ b[0])
    assert lmlab.similarity(a[0], a[0], metric="euclidean") == pytest.approx(0, abs=1e-6)
    with pytest.raises(LmlabError, match="metric must be one of"):
        lmlab.similarity(a, b, metric="manhattan")
    with pytest.raises(LmlabError, match="different sizes"):
        lmlab.similarity(a, rng.normal(size=(2, 4)))


def test_exact_search_returns_brute_force_neighbours(encoder):
    index = VectorIndex(encoder).add(TEXTS)
    vectors = encoder.encode(TEXTS)
    for query in ["monetary policy", "pets", "football", "elections"]:
        q = encoder.encode(query)
        scores = [float(v @ q) for v in vectors]
        expected = sorted(range(len(TEXTS)), key=lambda i: -scores[i])[:3]
        hits = index.search(query, k=3)
        assert [int(h.id) for h in hits] == expected
        assert [h.score for h in hits] == pytest.approx([scores[i] for i in expected], abs=1e-5)
    assert len(index.search("anything", k=100)) == len(TEXTS)


def test_save_load_gives_the_same_results(encoder, tmp_path):
    index = VectorIndex(encoder).add(TEXTS, ids=[f"doc{i}" for i in range(len(TEXTS))])
    index.save(tmp_path / "idx")
    loaded = VectorIndex.load(tmp_path / "idx")
    for query in ["pets", "the budget vote"]:
        assert [(h.id, h.text) for h in loaded.search(query, 4)] == [
            (h.id, h.text) for h in index.search(query, 4)
        ]
    loaded.add(["A new text about the economy."])
    assert loaded.search("economy", 1)[0].id == str(len(TEXTS))


def test_index_from_another_model_is_refused(encoder, tmp_path):
    small = lmlab.BagOfWordsEncoder.fit(TEXTS)
    small.save(tmp_path / "bow")
    bow_index = VectorIndex(lmlab.load_encoder(tmp_path / "bow")).add(TEXTS)
    bow_index.save(tmp_path / "idx")
    with pytest.raises(LmlabError, match="was built with"):
        VectorIndex.load(tmp_path / "idx", model=encoder)
    assert VectorIndex.load(tmp_path / "idx").search("cat mat", 1)[0].text == TEXTS[2]
    with pytest.raises(LmlabError, match="not an lmlab index"):
        VectorIndex.load(tmp_path)
    with pytest.raises(LmlabError, match="vectors of size"):
        VectorIndex(encoder).add(["a"], vectors=np.zeros((1, 5)))


def test_approximate_search_finds_the_exact_neighbours(encoder):
    pytest.importorskip("hnswlib")
    exact = VectorIndex(encoder).add(TEXTS)
    approximate = VectorIndex(encoder, approximate=True).add(TEXTS)
    for query in ["pets", "football", "taxes"]:
        assert [h.id for h in approximate.search(query, 3)] == [
            h.id for h in exact.search(query, 3)
        ]
        assert [h.score for h in approximate.search(query, 3)] == pytest.approx(
            [h.score for h in exact.search(query, 3)], abs=1e-5
        )


def test_approximate_index_saves_its_graph(encoder, tmp_path):
    pytest.importorskip("hnswlib")
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, encoder.dimension)).astype(np.float32)
    texts = [f"text {i}" for i in range(len(vectors))]
    index = VectorIndex(encoder, approximate=True).add(texts, vectors=vectors)
    queries = rng.normal(size=(20, encoder.dimension)).astype(np.float32)
    before = [[(h.id, h.score) for h in index.search(q, 10)] for q in queries]
    index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "hnsw.bin").is_file()
    loaded = VectorIndex.load(tmp_path / "idx")
    assert loaded._graph is not None and loaded._graph.get_current_count() == len(texts)
    assert [[(h.id, h.score) for h in loaded.search(q, 10)] for q in queries] == before
    (tmp_path / "idx" / "texts.jsonl").write_text('{"id": "0", "text": "a"}\n')
    np.save(tmp_path / "idx" / "vectors.npy", vectors[:1])
    with pytest.raises(LmlabError, match="graph and texts do not match"):
        VectorIndex.load(tmp_path / "idx")
