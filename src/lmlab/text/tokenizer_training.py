"""Train a tokenizer on your own corpus and save it as a Hugging Face `tokenizer.json`.

Kinds:
  - `bpe`: classic byte-pair encoding over whitespace-separated words with an end-of-word
    marker (Sennrich et al. 2016; the lecture's algorithm). Learned here, in `learn_bpe`, so a
    student can read it; ties between equally frequent pairs go to the pair seen first, as on the
    slide. Whitespace is not kept: decoding puts one space between words.
  - `byte-bpe`: GPT-2's byte-level BPE (every text encodes, whitespace is kept).
  - `wordpiece`: BERT's WordPiece, with [PAD] [UNK] [CLS] [SEP] [MASK].
  - `char`: one token per character (nanoGPT's Shakespeare), whitespace kept.
  - `word`: one token per whitespace-separated word, for text tokenized already (PTB, the
    n-gram convention): `<unk>` and `<eos>` stay whole.
`byte-bpe` and `wordpiece` are trained by the `tokenizers` library; the `char` and `word`
vocabularies are counted here. Every kind is loaded back with
`lmlab.text.hf_tokenizer.HFTokenizer`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from lmlab.errors import LmlabError
from lmlab.home import atomic_dir
from lmlab.text.files import open_text

KINDS = ("bpe", "byte-bpe", "wordpiece", "char", "word")
END_OF_TEXT = "<|endoftext|>"  # separates documents; ends a generation
UNKNOWN = "<unk>"
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
END_OF_WORD = "_"  # the lecture's end-of-word marker (so `_` in a text decodes as a space)


class VocabularySizeWarning(UserWarning):
    """A tokenizer trained smaller than the size asked for, because the corpus is too small."""


def learn_bpe(
    word_counts: dict[str, int], num_merges: int, end_of_word: str = END_OF_WORD
) -> list[tuple[str, str]]:
    """The BPE merges of a corpus given as word -> count (Sennrich et al. 2016).

    Each word starts as its characters plus the end-of-word marker. Repeatedly, the most frequent
    adjacent pair of symbols (counted over all words, weighted by word count) becomes one symbol.
    Pair counts are updated only in the words the merge touches; ties go to the pair first seen.

    Args:
        word_counts: how often each word occurs, in the order words first appear.
        num_merges: the most merges to learn (fewer when no pair is left).
        end_of_word: the symbol appended to every word.

    Returns:
        The merges in the order learned, e.g. [("e", "r"), ("er", "_"), ...].

    Example:
        >>> learn_bpe({"low": 5, "lowest": 2, "newer": 6, "wider": 3, "new": 2}, 2)
        [('e', 'r'), ('er', '_')]
    """
    words = [[*word, end_of_word] for word in word_counts]
    freqs = list(word_counts.values())
    counts: dict[tuple[str, str], int] = {}  # pair -> weighted count
    seen: dict[tuple[str, str], int] = {}  # pair -> when it (re)appeared: breaks ties
    where: dict[tuple[str, str], set[int]] = defaultdict(set)  # pair -> words holding it

    def add(pair: tuple[str, str], i: int) -> None:
        if pair not in counts:
            counts[pair], seen[pair] = 0, next(serial)
        counts[pair] += freqs[i]
        where[pair].add(i)

    serial = itertools.count()
    merges: list[tuple[str, str]] = []
    for i, symbols in enumerate(words):
        for pair in itertools.pairwise(symbols):
            add(pair, i)
    # A max-heap of (count, first seen) with stale entries skipped when popped: the most
    # frequent pair, and of equally frequent ones the first seen, without scanning all pairs.
    heap = [(-c, seen[p], p) for p, c in counts.items()]
    heapq.heapify(heap)
    while heap and len(merges) < num_merges:
        count, order, best = heapq.heappop(heap)
        if counts.get(best) != -count or seen[best] != order:
            continue  # stale: the pair's count changed after this entry was pushed
        merges.append(best)
        touched = set()
        for i in sorted(where.pop(best)):
            old = words[i]
            new = _merge(old, best)
            # Take the word's old pairs out of the counts and put its new pairs in.
            for pair in itertools.pairwise(old):
                counts[pair] -= freqs[i]
                touched.add(pair)
            for pair in itertools.pairwise(new):
                add(pair, i)
                touched.add(pair)
            words[i] = new
        for pair in touched:
            if counts[pair] == 0:
                del counts[pair], seen[pair]
                where.pop(pair, None)
            else:
                heapq.heappush(heap, (-counts[pair], seen[pair], pair))
    return merges


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    """`symbols` with every non-overlapping occurrence of `pair` (left to right) joined."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def train_tokenizer(
    corpus: Iterable[str | Path],
    out: str | Path,
    *,
    kind: str = "bpe",
    vocab_size: int | None = 8000,
):
    """Train a tokenizer on text files and save it as `out/tokenizer.json`.

    Args:
        corpus: paths of UTF-8 text files.
        out: the folder to write (replaced atomically if it exists).
        kind: bpe, byte-bpe, wordpiece, char or word (see the module docstring).
        vocab_size: the most tokens (special tokens included); char uses every character seen,
            and None gives word every word seen (the BPE kinds: 8000).

    Returns:
        The trained tokenizer, an `HFTokenizer` read back from `out`. When the corpus cannot
        fill `vocab_size` (a BPE runs out of pairs to merge once every word is one token; a
        word vocabulary has only so many words), the tokenizer is smaller: its `size_note`
        says why (None otherwise), and a VocabularySizeWarning says it too.

    Example:
        >>> tok = train_tokenizer(["input.txt"], "tok", kind="bpe", vocab_size=1000)
        >>> tok.tokens("lowest newer")
    """
    from lmlab.text.hf_tokenizer import HFTokenizer

    if kind not in KINDS:
        raise LmlabError(f"tokenizer kind must be one of {', '.join(KINDS)}, not {kind!r}")
    texts = read_corpus(corpus)
    asked = vocab_size
    if vocab_size is None:  # no limit: every word or character (BPE kinds need a size)
        vocab_size = 1 << 30 if kind in ("char", "word") else 8000
    raw = _build(kind, texts, vocab_size)
    size = raw.get_vocab_size(with_added_tokens=True)
    note = None
    if asked is not None and kind != "char" and size < vocab_size:  # char: every character
        note = f"{size:,} tokens, fewer than the {vocab_size:,} asked: {_why_short(kind, texts)}"
        warnings.warn(f"{kind} tokenizer: {note}", VocabularySizeWarning, stacklevel=2)
    eos = "[SEP]" if kind == "wordpiece" else END_OF_TEXT
    config = {"eos_token": eos, "lmlab_kind": kind}
    if kind == "wordpiece":
        config.update(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", mask_token="[MASK]")
    out = Path(out)
    with atomic_dir(out, replaces="tokenizer.json") as tmp:
        raw.save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok = HFTokenizer(out)
    tok.size_note = note
    return tok


def _why_short(kind: str, texts: list[str]) -> str:
    """Why a corpus gave fewer tokens than asked: it has too few distinct words."""
    distinct = len({w for text in texts for w in text.split()})
    if kind == "word":
        return f"the corpus has only {distinct:,} distinct words"
    return (
        f"every one of the corpus's {distinct:,} distinct words is a single token by then, so "
        "no pair is left to merge (a larger corpus, or a smaller --vocab-size)"
    )


def read_corpus(paths: Iterable[str | Path]) -> list[str]:
    """The texts of the corpus files (one string per file); a clear error for a bad path."""
    texts = []
    for path in map(Path, paths):
        try:
            with open_text(path) as f:  # strict UTF-8, a byte-order mark skipped
                texts.append(f.read())
        except OSError as e:
            raise LmlabError(f"cannot read corpus file {path}: {e}") from None
    if not texts or not any(t.strip() for t in texts):
        raise LmlabError("the corpus is empty: give one or more non-empty text files")
    return texts


def _build(kind: str, texts: list[str], vocab_size: int):
    """A trained `tokenizers.Tokenizer` of this kind."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    if kind == "bpe":
        specials = [END_OF_TEXT, UNKNOWN]
        words = Counter(w for text in texts for w in text.split())
        alphabet = sorted({c for w in words for c in w} | {END_OF_WORD})
        num_merges = vocab_size - len(specials) - len(alphabet)
        if num_merges < 0:
            raise LmlabError(
                f"--vocab-size {vocab_size} is smaller than the alphabet and special tokens "
                f"({len(alphabet) + len(specials)}); raise it",
                param="vocab_size",
            )
        merges = learn_bpe(dict(words), num_merges)
        vocab = {t: i for i, t in enumerate([*specials, *alphabet, *("".join(m) for m in merges)])}
        raw = Tokenizer(models.BPE(vocab, merges, unk_token=UNKNOWN))
        raw.add_special_tokens(specials)
        # The marker is appended to every word before it is split into characters.
        raw.normalizer = normalizers.Replace(Regex(r"(?<=\S)(?=\s|$)"), END_OF_WORD)
        raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        raw.decoder = decoders.BPEDecoder(suffix=END_OF_WORD)
        return raw
    if kind == "byte-bpe":
        specials = [END_OF_TEXT]
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        _check_size(vocab_size, len(alphabet) + len(specials))
        raw = Tokenizer(models.BPE())
        raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        raw.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=alphabet,
            show_progress=False,
        )
    elif kind == "wordpiece":
        specials = BERT_SPECIALS
        alphabet = {c for text in texts for c in text if not c.isspace()}
        _check_size(vocab_size, len(alphabet) + len(specials))
        raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        raw.normalizer = normalizers.BertNormalizer(lowercase=False)
        raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        raw.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        )
    elif kind == "char":  # counted here, in a tenth of the library trainer's time, with its
        # order: ids by falling frequency, ties by character
        counts = Counter()
        for text in texts:
            counts.update(text)
        specials = [END_OF_TEXT, UNKNOWN]
        chars = sorted(counts, key=lambda c: (-counts[c], c))
        vocab = {t: i for i, t in enumerate(specials + chars)}
        raw = Tokenizer(models.WordLevel(vocab, unk_token=UNKNOWN))
        raw.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
        raw.decoder = decoders.Fuse()  # characters are joined as they are
        raw.add_special_tokens(specials)
        return raw
    else:  # word: counted here; the library's trainer gives a special token that is also a
        # word of the corpus (PTB's `<unk>`) two ids and leaves a hole in the vocabulary.
        raw = Tokenizer(models.WordLevel(word_vocabulary(texts, vocab_size), unk_token=UNKNOWN))
        raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # the text is tokenized already
        raw.add_special_tokens([END_OF_TEXT, UNKNOWN])
        return raw
    raw.train_from_iterator(_lines(texts), trainer)
    if kind == "wordpiece":
        cls, sep = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
        raw.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
        )
    return raw


def _check_size(vocab_size: int, least: int) -> None:
    if vocab_size < least:
        raise LmlabError(
            f"--vocab-size {vocab_size} is smaller than the alphabet and special tokens "
            f"({least}); raise it",
            param="vocab_size",
        )


def word_vocabulary(texts: list[str], vocab_size: int) -> dict[str, int]:
    """Ids for the special tokens, then the most frequent words (ties alphabetical): 0..N-1."""
    counts = Counter(w for text in texts for w in text.split())
    specials = [END_OF_TEXT, UNKNOWN]
    words = sorted((w for w in counts if w not in specials), key=lambda w: (-counts[w], w))
    _check_size(vocab_size, len(specials) + 1)
    return {w: i for i, w in enumerate(specials + words[: vocab_size - len(specials)])}


def _lines(texts: list[str]) -> Iterable[str]:
    """The corpus in line-sized pieces (the trainers run in parallel over them)."""
    for text in texts:
        yield from text.splitlines(keepends=True)


def merges_of(folder: str | Path) -> list[tuple[str, str]]:
    """The merges of a BPE `tokenizer.json` in `folder`, in the order they were learned."""
    path = Path(folder) / "tokenizer.json"
    try:
        model = json.loads(path.read_text())["model"]
    except (OSError, ValueError, KeyError) as e:
        raise LmlabError(f"cannot read {path}: {e}") from None
    if model.get("type") != "BPE":
        raise LmlabError(f"{path} is a {model.get('type')} tokenizer, which has no merges")
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
