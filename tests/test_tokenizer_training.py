"""Tokenizer training: the lecture's BPE merges, a reference BPE, every kind round-trips."""

import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lmlab.errors import LmlabError
from lmlab.text.tokenizer_training import KINDS, learn_bpe, merges_of, train_tokenizer

# Jurafsky & Martin, Speech and Language Processing (3rd ed.), section 2.5.2 (the lecture slide).
LECTURE = {"low": 5, "lowest": 2, "newer": 6, "wider": 3, "new": 2}
SLIDE_MERGES = [("e", "r"), ("er", "_"), ("n", "e"), ("ne", "w"), ("l", "o"), ("lo", "w"),
                ("new", "er_"), ("low", "_")]  # fmt: skip
SHAKESPEARE = Path(__file__).parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"


def pair_counts(words: dict[tuple[str, ...], int]) -> dict[tuple[str, str], int]:
    """The textbook count, from scratch: every adjacent pair, weighted by word count."""
    counts: dict[tuple[str, str], int] = {}
    for symbols, c in words.items():
        for pair in itertools.pairwise(symbols):
            counts[pair] = counts.get(pair, 0) + c
    return counts


def apply_merge(words: dict[tuple[str, ...], int], best: tuple[str, str]):
    merged = {}
    for symbols, c in words.items():
        out, i = [], 0
        while i < len(symbols):
            if symbols[i : i + 2] == best:
                out.append(best[0] + best[1])
                i += 2
            else:
                out.append(symbols[i])
                i += 1
        merged[tuple(out)] = c
    return merged


def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "lecture.txt"
    path.write_text(" ".join(w for w, c in LECTURE.items() for _ in range(c)) + "\n")
    return path


def test_lecture_merges():
    assert learn_bpe(LECTURE, 8) == SLIDE_MERGES


def test_incremental_counts_match_the_textbook_loop():
    text = "the cat sat on the mat with the other cat; then the rat ate the oat " * 3
    text += "lowest newer wider newest widest lower slower slowest"
    counts = dict(Counter(text.split()))
    words = {(*w, "_"): c for w, c in counts.items()}
    merges = learn_bpe(counts, 1000)
    for best in merges:  # each merge is a most frequent pair, recounted from scratch
        recount = pair_counts(words)
        assert recount[best] == max(recount.values()), best
        words = apply_merge(words, best)
    assert pair_counts(words) == {}  # it stopped when every word was one symbol


def test_trained_tokenizer_applies_the_merges(tmp_path):
    tok = train_tokenizer([corpus_file(tmp_path)], tmp_path / "tok", kind="bpe", vocab_size=30)
    assert merges_of(tmp_path / "tok")[:8] == SLIDE_MERGES
    assert tok.tokens("newer low") == ["newer_", "low_"]
    assert tok.decode(tok.encode("lowest newer")) == "lowest newer"


def test_cli_shows_the_first_merges(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lmlab", "tokenizer", "train", str(corpus_file(tmp_path)),
         "--kind", "bpe", "--vocab-size", "30", "--show-merges", "6", "--out", str(tmp_path / "t")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line.split(maxsplit=1)[1] for line in out.stdout.splitlines()[:6]]
    assert lines == ["e r", "er _", "n e", "ne w", "l o", "lo w"]
    assert (tmp_path / "t" / "tokenizer.json").is_file()


def test_vocabulary_smaller_than_the_alphabet_is_a_clear_error(tmp_path):
    with pytest.raises(LmlabError, match="smaller than the alphabet"):
        train_tokenizer([corpus_file(tmp_path)], tmp_path / "tok", kind="bpe", vocab_size=5)
    out = subprocess.run(
        [sys.executable, "-m", "lmlab", "tokenizer", "train", str(corpus_file(tmp_path)),
         "--vocab-size", "5", "--out", str(tmp_path / "t")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.startswith("error:") and "Traceback" not in out.stderr
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips(tmp_path, kind):
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    path = tmp_path / "c.txt"
    path.write_text(text * 20)
    tok = train_tokenizer([path], tmp_path / kind, kind=kind, vocab_size=300)
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    by_line = tok.encode_batch(text.splitlines(keepends=True))  # how the trainer encodes
    assert [i for line in by_line for i in line] == ids
    decoded = tok.decode(ids)
    if kind in ("char", "byte-bpe"):  # whitespace kept exactly
        assert decoded == text
    else:  # words kept, whitespace normalised
        squash = "".join(text.split())
        assert "".join(decoded.split()) == squash
    assert tok.eos_ids


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="shared data not present")
def test_char_tokenizer_on_tiny_shakespeare_has_its_65_characters(tmp_path):
    tok = train_tokenizer([SHAKESPEARE], tmp_path / "c", kind="char")
    assert tok.vocab_size == 65 + 2  # nanoGPT's 65 characters plus <|endoftext|> and <unk>


def test_word_tokenizer_keeps_ptb_markers_whole(tmp_path):
    path = tmp_path / "ptb.txt"
    path.write_text(" the <unk> rose N % <eos>\n" * 5 + "u.s. stocks fell\n")
    tok = train_tokenizer([path], tmp_path / "w", kind="word", vocab_size=100)
    assert tok.tokens("the <unk> rose N % <eos>") == ["the", "<unk>", "rose", "N", "%", "<eos>"]
    assert tok.tokens("u.s. stocks") == ["u.s.", "stocks"]


def test_word_ids_have_no_holes_when_the_corpus_holds_a_special_token(tmp_path):
    # PTB writes `<unk>` in its text: every id below vocab_size must be used, and no higher one.
    path = tmp_path / "ptb.txt"
    path.write_text("a <unk> b <unk> a c\n")
    tok = train_tokenizer([path], tmp_path / "w", kind="word", vocab_size=100)
    ids = {tok.encode(w)[0] for w in ["<|endoftext|>", "<unk>", "a", "b", "c"]}
    assert ids == set(range(tok.vocab_size)) == set(range(5))
    assert tok.encode("a zebra") == [tok.encode("a")[0], tok.encode("<unk>")[0]]
    capped = train_tokenizer([path], tmp_path / "w3", kind="word", vocab_size=3)
    assert capped.vocab_size == 3 and capped.tokens("a c") == ["a", "<unk>"]


def test_corpus_files_are_strict_utf8_and_a_byte_order_mark_is_skipped(tmp_path):
    from lmlab.text.tokenizer_training import read_corpus

    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbflow lower\n")
    assert read_corpus([bom]) == ["low lower\n"]  # no U+FEFF to learn as a character
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"low\ncaf\xe9\n")
    with pytest.raises(LmlabError, match=r"latin1.txt is not UTF-8 \(line 2, byte 0xe9\)"):
        read_corpus([latin1])


def test_a_bpe_that_runs_out_of_pairs_says_so(tmp_path):
    """Asked for 8,000 tokens, a small corpus stops when every word is one token: the result
    and the CLI say how far it got and why (it used to stop short without a word)."""
    path = tmp_path / "small.txt"
    path.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 10)
    with pytest.warns(UserWarning, match="fewer than the 8,000 asked") as caught:
        tok = train_tokenizer([path], tmp_path / "bpe", kind="bpe", vocab_size=8000)
    assert tok.vocab_size < 8000
    assert tok.size_note.startswith(f"{tok.vocab_size:,} tokens, fewer than the 8,000 asked")
    assert "7 distinct words" in tok.size_note and "no pair is left to merge" in tok.size_note
    assert len(caught) == 1
    every_word = {w + "_" for w in path.read_text().split()}
    assert every_word <= {tok.id_to_token(i) for i in range(tok.vocab_size)}  # truly merged out
    word = train_tokenizer([path], tmp_path / "word", kind="word", vocab_size=100)
    assert word.size_note.endswith("the corpus has only 7 distinct words")
    assert train_tokenizer([path], tmp_path / "b2", kind="bpe", vocab_size=20).size_note is None
    out = subprocess.run(
        [sys.executable, "-m", "lmlab", "tokenizer", "train", str(path), "--out",
         str(tmp_path / "t")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (warning,) = out.stderr.splitlines()
    assert warning.startswith(f"warning: {tok.vocab_size:,} tokens, fewer than the 8,000 asked")
