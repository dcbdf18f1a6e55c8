"""N-gram estimation: hand-computed probabilities, a dict-based reference, distributions sum to 1.

The tiny corpus used by the hand computations (3 sentences):

    a b          ->  <s> a b </s>
    a b c        ->  <s> a b c </s>
    c b          ->  <s> c b </s>

Vocabulary: <unk> <s> </s> b a c (V = 6; V' = 5 words can be predicted, all but <s>).
Unigram counts (predicted tokens): a 2, b 3, c 2, </s> 3 -> N = 10.
Bigram counts: <s> a 2, a b 2, b </s> 2, b c 1, c </s> 1, <s> c 1, c b 1.
"""

import itertools
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch

from lmlab.errors import LmlabError
from lmlab.lm.ngram.counts import count_ngrams, read_corpus
from lmlab.lm.ngram.estimate import mkn_discounts
from lmlab.lm.ngram.model import NgramLM

TINY = "a b\na b c\nc b\n"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(TINY)
    return path


def train(path, **options) -> NgramLM:
    return NgramLM.train(path, **options)


def test_vocabulary_and_counts(tiny):
    lm = train(tiny, order=2, smoothing="mle")
    assert lm.tokenizer.vocab == ["<unk>", "<s>", "</s>", "b", "a", "c"]
    assert lm.count("b") == 3 and lm.count("</s>") == 3 and lm.count("<s>") == 3
    assert lm.count("<s> a") == 2 and lm.count("b c") == 1 and lm.count("a c") == 0


def test_mle(tiny):
    lm = train(tiny, order=2, smoothing="mle")
    assert lm.prob("b", ["a"]) == pytest.approx(1.0)  # c(a b) / c(a) = 2 / 2
    assert lm.prob("</s>", ["b"]) == pytest.approx(2 / 3)
    assert lm.prob("c", ["b"]) == pytest.approx(1 / 3)
    assert lm.prob("a", ["b"]) == 0.0  # unseen after a seen context: nothing
    assert train(tiny, order=1, smoothing="mle").prob("b") == pytest.approx(3 / 10)


def test_a_lowercased_model_lowercases_what_it_is_asked(tmp_path):
    path = tmp_path / "case.txt"
    path.write_text("The cat sat\nthe cat ran\nThe dog sat\n")
    lm = train(path, order=2, smoothing="mle", lowercase=True)
    assert lm.prob("cat", ["The"]) == lm.prob("cat", ["the"]) == pytest.approx(2 / 3)
    assert lm.count("The cat") == lm.count("the cat") == 2


def test_add_k(tiny):
    uni = train(tiny, order=1, smoothing="add-k", k=1)
    # Laplace: (c + 1) / (N + V') with N = 10, V' = 5
    assert uni.prob("b") == pytest.approx(4 / 15)
    assert uni.prob("<unk>") == pytest.approx(1 / 15)
    assert uni.prob("<s>") == 0.0
    lm = train(tiny, order=2, smoothing="add-k", k=1)
    assert lm.prob("c", ["b"]) == pytest.approx(2 / 8)  # (1 + 1) / (3 + 5)
    assert lm.prob("</s>", ["b"]) == pytest.approx(3 / 8)
    # the 3/8 left for <unk>, a, b after "b" is shared by their unigram probabilities
    # (1/15, 3/15, 4/15; sum 8/15): p(a | b) = 3/8 * (3/15) / (8/15) = 9/64
    assert lm.prob("a", ["b"]) == pytest.approx(9 / 64)
    half = train(tiny, order=2, smoothing="add-k", k=0.5)
    assert half.prob("c", ["b"]) == pytest.approx(1.5 / 5.5)


def test_kneser_ney_uses_continuation_counts(tiny):
    lm = train(tiny, order=2, smoothing="kn")
    # Bigram counts 2,2,2,1,1,1,1: n1 = 4, n2 = 3 -> D = 4 / (4 + 2*3) = 0.4.
    # Unigrams use continuation counts N1+(. w): a 1 (<s>), b 2 (a, c), c 2 (b, <s>),
    # </s> 2 (b, c); total 7; n1 = 1, n2 = 3 -> D = 1/7; gamma = 4 * (1/7) / 7 = 4/49.
    gamma0 = 4 / 49
    p_b = (2 - 1 / 7) / 7 + gamma0 / 5
    p_a = (1 - 1 / 7) / 7 + gamma0 / 5
    assert lm.prob("b", []) == pytest.approx(p_b)  # = 69/245
    assert lm.prob("a", []) == pytest.approx(p_a)  # = 34/245
    assert lm.prob("<unk>", []) == pytest.approx(gamma0 / 5)
    # b was seen 3 times and c twice, but both follow two different words: same probability
    assert lm.prob("c", []) == pytest.approx(lm.prob("b", []))
    # after "b": </s> (count 2) and c (1); gamma(b) = 0.4 * 2 / 3
    gamma_b = 0.4 * 2 / 3
    assert lm.prob("c", ["b"]) == pytest.approx((1 - 0.4) / 3 + gamma_b * p_b)
    assert lm.prob("a", ["b"]) == pytest.approx(gamma_b * p_a)
    # an unseen context backs off entirely
    assert lm.prob("b", ["<unk>"]) == pytest.approx(p_b)


def test_modified_kneser_ney_hand_computed(tiny):
    lm = train(tiny, order=2, smoothing="mkn")
    # Unigram continuation counts 1, 2, 2, 2: n1 = 1, n2 = 3, n3 = n4 = 0; Y = 1/7;
    # D1 = 1 - 2 Y n2/n1 = 1/7; D2 = 2 - 3 Y n3/n2 = 2; D3+ undefined (n3 = 0) -> Y.
    assert lm.info["discounts"][0] == pytest.approx([1 / 7, 2, 1 / 7])
    # Bigrams: n1 = 4, n2 = 3, n3 = 0: Y = 0.4; D1 = 1 - 2 * 0.4 * 3/4 = 0.4; D2 = 2.
    assert lm.info["discounts"][1] == pytest.approx([0.4, 2, 0.4])
    total = 7
    gamma0 = (1 / 7 + 3 * 2) / total  # one word with count 1, three with count 2
    p_a = (1 - 1 / 7) / total + gamma0 / 5
    p_b = (2 - 2) / total + gamma0 / 5
    assert lm.prob("a", []) == pytest.approx(p_a)
    assert lm.prob("b", []) == pytest.approx(p_b)
    # after "b": </s> count 2 (D2 = 2), c count 1 (D1 = 0.4); gamma(b) = (2 + 0.4) / 3
    gamma_b = 2.4 / 3
    assert lm.prob("c", ["b"]) == pytest.approx((1 - 0.4) / 3 + gamma_b * lm.prob("c", []))


def test_mkn_discount_formulas():
    a = np.array([1] * 10 + [2] * 6 + [3] * 4 + [4] * 3 + [7] * 2)
    y = 10 / (10 + 2 * 6)
    assert mkn_discounts(a) == pytest.approx(
        [1 - 2 * y * 6 / 10, 2 - 3 * y * 4 / 6, 3 - 4 * y * 3 / 4]
    )


def reference_mkn(sentences: list[list[str]], order: int, vocab: list[str]):
    """Interpolated modified Kneser–Ney written from the formulas, with dicts (slow, clear)."""
    grams = Counter()
    for s in sentences:
        toks = ["<s>", *s, "</s>"]
        for n in range(1, order + 1):
            for i in range(len(toks) - n + 1):
                grams[tuple(toks[i : i + n])] += 1
    left = {}
    for g in grams:
        if len(g) > 1:
            left.setdefault(g[1:], set()).add(g[0])

    def a(g):
        if g == ("<s>",):
            return 0
        if len(g) == order or g[0] == "<s>":
            return grams[g]
        return len(left.get(g, ()))

    discounts = {}
    for n in range(1, order + 1):
        cc = Counter(a(g) for g in grams if len(g) == n)
        n1, n2, n3, n4 = (cc[i] for i in range(1, 5))
        y = n1 / (n1 + 2 * n2)
        ds = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
        discounts[n] = [min(max(d, 0), i + 1) for i, d in enumerate(ds)]

    def disc(n, count):
        return 0 if count == 0 else discounts[n][min(count, 3) - 1]

    def p(w, h):
        if w == "<s>":
            return 0.0
        n = len(h) + 1
        children = [g for g in grams if len(g) == n and g[:-1] == h]
        if not children:
            return p(w, h[1:]) if h else 1 / (len(vocab) - 1)
        total = sum(a(g) for g in children)
        gamma = sum(disc(n, a(g)) for g in children) / total
        lower = p(w, h[1:]) if h else 1 / (len(vocab) - 1)
        own = max(a((*h, w)) - disc(n, a((*h, w))), 0) / total
        return own + gamma * lower

    return p, discounts


@pytest.mark.parametrize("order", [2, 3])
def test_mkn_matches_a_dict_reference(tmp_path, order):
    rng = random.Random(order)
    words = [f"w{i}" for i in range(40)]
    weights = [1 / (i + 1) ** 1.5 for i in range(40)]  # Zipf-like: rare words give n1..n4 > 0
    sentences = [rng.choices(words, weights, k=rng.randint(1, 7)) for _ in range(80)]
    path = tmp_path / "c.txt"
    path.write_text("\n".join(" ".join(s) for s in sentences))
    lm = train(path, order=order, smoothing="mkn")
    ref, discounts = reference_mkn(sentences, order, lm.tokenizer.vocab)
    for n in range(1, order + 1):
        assert lm.info["discounts"][n - 1] == pytest.approx(discounts[n])
    seen = [tuple(["<s>", *s][: order - 1]) for s in sentences[:10]]  # listed contexts
    seen += [tuple(s[-(order - 1) :]) for s in sentences[10:20] if len(s) >= order - 1]
    known = lm.tokenizer.vocab[3:]
    contexts = [(), *seen, *(tuple(rng.choices(known, k=order - 1)) for _ in range(10))]
    for h in contexts:
        if "<s>" in h[1:]:
            continue
        ours = 10 ** lm.tables.next_log10([lm.tokenizer.ids[w] for w in h])
        theirs = [ref(w, h) for w in lm.tokenizer.vocab]
        assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-9), h


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    weights = [1 / (i + 1) for i in range(30)]
    path = tmp_path_factory.mktemp("c") / "small.txt"
    lines = [" ".join(rng.choices(words, weights, k=rng.randint(1, 12))) for _ in range(300)]
    path.write_text("\n".join(lines))
    return path


@pytest.mark.parametrize(
    ("smoothing", "order"), list(itertools.product(["mle", "add-k", "kn", "mkn"], [1, 2, 3, 4, 6]))
)
def test_next_word_distribution_sums_to_one(small_corpus, smoothing, order):
    lm = train(small_corpus, order=order, smoothing=smoothing, k=0.5, min_count=2)
    rng = np.random.default_rng(order)
    V = lm.vocab_size
    for _ in range(20):  # random histories, most of them unseen
        history = [1, *rng.integers(3, V, size=order + 1).tolist()]
        cut = rng.integers(1, len(history) + 1)
        p = 10 ** lm.tables.next_log10(history[:cut][-(order - 1) :] if order > 1 else [])
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        assert p[1] == 0.0  # <s> is never predicted
    state = lm.new_state(2)
    logits = lm.forward(state, torch.tensor([[1, 5, 7], [1, 3, 3]]), all_positions=True)
    assert torch.exp(logits.double()).sum(-1) == pytest.approx(torch.ones(2, 3).double(), abs=1e-5)


@pytest.mark.parametrize("smoothing", ["add-k", "kn", "mkn"])
def test_file_score_agrees_with_the_next_word_distributions(small_corpus, tmp_path, smoothing):
    lm = train(small_corpus, order=3, smoothing=smoothing)
    test = tmp_path / "test.txt"
    test.write_text("w1 w2 w3 w4\nw5 zzz w1\n\nw0\n")  # zzz is out of vocabulary
    ev = lm.evaluate_file(test)
    total, n = 0.0, 0
    for line in test.read_text().splitlines():
        if not line.split():
            continue
        history = [1]
        for w in [*line.split(), "</s>"]:
            i = lm.tokenizer.ids.get(w)
            if i is not None:
                total += lm.tables.next_log10(history[-2:])[i]
                n += 1
            history.append(0 if i is None else i)  # an OOV word stands as <unk>
    assert (ev.tokens, ev.oov, ev.sentences, ev.words) == (n, 1, 3, 8)
    assert ev.perplexity == pytest.approx(10 ** (-total / n), rel=1e-6)
    assert ev.loss == pytest.approx(-total * math.log(10) / n, rel=1e-6)


def test_generation_starts_a_sentence_and_ends_at_eos(small_corpus):
    import lmlab

    lm = train(small_corpus, order=3)
    assert lm.tokenizer.encode("w1 w2", add_special_tokens=True) == [
        1,
        *lm.tokenizer.encode("w1 w2"),
    ]
    out = lmlab.generate(lm, "", max_tokens=200, seed=1)
    assert out.finish_reason == "stop" and out.token_ids[-1] == 2
    assert out.text and all(w in lm.tokenizer.ids for w in out.text.split())
    again = lmlab.generate(lm, "", max_tokens=200, seed=1)
    assert again.text == out.text


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("", {}, "no sentence found"),
        ("\n  \n\n", {}, "no sentence found"),
        ("a b\n", {"order": 0}, "--order must be at least 1"),
        ("a b\n", {"smoothing": "add-k", "k": 0}, "add-k needs a finite --k > 0"),
        ("a b\n", {"smoothing": "witten-bell"}, "unknown smoothing"),
        ("a b\n", {"min_count": 0}, "--min-count must be at least 1"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, text, options, message):
    path = tmp_path / "c.txt"
    path.write_text(text)
    with pytest.raises(LmlabError, match=message):
        train(path, **options)


def test_unreadable_and_non_utf8_files_name_the_file_and_line(tmp_path):
    with pytest.raises(LmlabError, match=r"cannot read .*missing\.txt"):
        train(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"ok line\ncaf\xe9 au lait\n")
    with pytest.raises(LmlabError, match=r"latin1.txt, line 2: not UTF-8"):
        train(bad)


def test_vocabulary_limits(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a a a b b c\nA a d\n")
    assert read_corpus([path], min_count=2).vocab == ["<unk>", "<s>", "</s>", "a", "b"]
    assert read_corpus([path], max_vocab=1).vocab == ["<unk>", "<s>", "</s>", "a"]
    lower = read_corpus([path], lowercase=True)
    assert lower.vocab[3] == "a" and "A" not in lower.vocab
    corpus = read_corpus([path], min_count=2)
    assert corpus.n_unk == 3  # c, A, d
    counts = count_ngrams(corpus, 2)
    assert counts.counts[0][0] == 3  # <unk>


def test_a_subword_tokenizer_splits_the_corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("Tokenization matters.\nTokenization is fun.\n")
    lm = train(path, order=2, smoothing="mle", tokenizer="all-minilm-l6-v2")  # WordPiece
    assert {"token", "##ization", "."} <= set(lm.tokenizer.vocab)
    ids = lm.tokenizer.encode("Tokenization is fun.")
    assert [lm.tokenizer.vocab[i] for i in ids] == ["token", "##ization", "is", "fun", "."]
    assert lm.tokenizer.decode(ids) == "tokenization is fun."
    assert lm.prob("##ization", ["token"]) == pytest.approx(1.0)
    assert lm.evaluate_file(path).oov == 0


def test_literal_sentence_markers_in_the_text_are_unknown_words(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a <s> b </s>\n<unk> a\n")
    corpus = read_corpus([path])
    assert corpus.vocab == ["<unk>", "<s>", "</s>", "a", "b"]
    assert corpus.tokens.tolist() == [1, 3, 0, 4, 0, 2, 1, 0, 3, 2]
    assert corpus.n_unk == 2  # the literal <unk> was already unknown
    ev = NgramLM.train(path, order=2).evaluate_file(path)
    assert (ev.tokens, ev.oov) == (6, 2)  # a, b, </s>, <unk>, a, </s>
