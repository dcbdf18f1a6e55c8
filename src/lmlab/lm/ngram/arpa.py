"""ARPA back-off files (the format of SRILM, KenLM, CMU-Cambridge), read and written, gzip too.

    \\data\\
    ngram 1=10003                      <- header: how many n-grams of each order follow
    ngram 2=297115

    \\1-grams:
    -1.614813\t<unk>\t-0.412394         <- log10 p(w | h), the words, log10 b(h) (optional)
    -99\t<s>\t-0.794150                 <- <s> is never predicted: probability 0 written as -99
    ...
    \\end\\

A backoff weight is written only for n-grams below the highest order that are contexts; a
missing one means b = 1 (log 0). A file ending in `.gz` is compressed.
"""

from __future__ import annotations

import gc
import gzip
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from lmlab.errors import LmlabError
from lmlab.lm.ngram.counts import SPECIALS
from lmlab.lm.ngram.tables import LOG10_ZERO, NgramTables


def _fmt(values: np.ndarray) -> list[str]:
    """log10 values as text, probability 0 as -99 (both tools' convention)."""
    values = np.where(np.isfinite(values), values, LOG10_ZERO)
    return [f"{v:.6g}" for v in values.tolist()]


def write_arpa(tables: NgramTables, path: str | Path) -> None:
    """Write the model as an ARPA file (gzip-compressed when the name ends in .gz), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        raw = gzip.open(tmp, "wb", compresslevel=3) if path.suffix == ".gz" else open(tmp, "wb")  # noqa: SIM115
        with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as f:
            _write(tables, f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write(tables: NgramTables, f) -> None:
    f.write("\\data\\\n")
    for n, size in enumerate(tables.sizes, 1):
        f.write(f"ngram {n}={size}\n")
    text: list[str] = list(tables.vocab)  # the words of every n-gram of the current order
    V = tables.vocab_size
    for n in range(1, tables.order + 1):
        if n > 1:  # an n-gram is its first word, then its suffix of order n-1 (key // V)
            key = tables.keys[n - 1]
            suffix_text = text
            text = [
                tables.vocab[w] + " " + suffix_text[s]
                for w, s in zip((key % V).tolist(), (key // V).tolist(), strict=True)
            ]
        f.write(f"\n\\{n}-grams:\n")
        probs = _fmt(tables.log10_prob[n - 1])
        bows = tables.log10_bow[n - 1]
        if n == tables.order:
            f.writelines(f"{p}\t{t}\n" for p, t in zip(probs, text, strict=True))
            continue
        f.writelines(
            f"{p}\t{t}\t{b}\n" if h else f"{p}\t{t}\n"
            for p, t, b, h in zip(probs, text, _fmt(bows), (bows != 0).tolist(), strict=True)
        )
    f.write("\n\\end\\\n")


_NGRAM_LINE = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")


def read_arpa(path: str | Path) -> NgramTables:
    """Read an ARPA file (plain or .gz) from SRILM, KenLM or lmlab.

    Words missing from the file's unigrams among `<unk>`, `<s>`, `</s>` are added with
    probability 0. Raises LmlabError on a broken header, counts that do not match the header,
    or an n-gram whose suffix is not listed (every tool's models list them).

    Example:
        >>> tables = read_arpa("model.arpa.gz")
        >>> tables.order, tables.sizes
    """
    path = Path(path)
    collecting = gc.isenabled()
    gc.disable()  # millions of small lists, none cyclic: the cyclic collector only slows us down
    try:
        raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
        with raw, io.TextIOWrapper(raw, encoding="utf-8") as f:
            return _read(f, path)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise LmlabError(f"cannot read ARPA file {path}: {e}") from None
    except UnicodeDecodeError:
        raise LmlabError(f"ARPA file {path} is not UTF-8 text") from None
    finally:
        if collecting:
            gc.enable()


def _read(f, path: Path) -> NgramTables:
    def bad(what: str) -> LmlabError:
        return LmlabError(f"{path} is not a valid ARPA file: {what}")

    line = ""
    for line in f:  # skip anything before \data\ (SRILM and KenLM allow comments there)
        if line.strip() == "\\data\\":
            break
    else:
        raise bad("no \\data\\ header")
    declared: list[int] = []
    for line in f:
        line = line.strip()
        if not line:
            if declared:
                break
            continue
        m = _NGRAM_LINE.fullmatch(line)
        if not m or int(m.group(1)) != len(declared) + 1:
            raise bad(f"unexpected header line {line!r} (want 'ngram {len(declared) + 1}=COUNT')")
        declared.append(int(m.group(2)))
    if not declared:
        raise bad("the header lists no n-gram counts")
    sections: list[tuple[list[str], list[str], list[str]]] = []
    for n, want in enumerate(declared, 1):
        for line in f:
            if line.strip():
                break
        if line.strip() != f"\\{n}-grams:":
            raise bad(f"expected the section \\{n}-grams:, found {line.strip()!r}")
        # three flat lists (no list per line): log10 p, log10 b ("0" when absent), the words
        probs: list[str] = []
        bows: list[str] = []
        words: list[str] = []
        for line in f:
            parts = line.split()
            if len(parts) == n + 1:
                bows.append("0")
            elif len(parts) == n + 2:
                bows.append(parts.pop())
            elif not parts:
                break
            else:
                raise bad(f"in \\{n}-grams: the line {line.strip()!r} does not have {n} words")
            probs.append(parts[0])
            words += parts[1:]
        if len(probs) != want:
            raise bad(f"the header says {want} {n}-grams but the file lists {len(probs)}")
        sections.append((probs, bows, words))
    for line in f:
        if line.strip():
            if line.strip() != "\\end\\":
                raise bad(f"expected \\end\\, found {line.strip()!r}")
            break
    return _tables(sections, bad)


def _tables(sections: list[tuple[list[str], list[str], list[str]]], bad) -> NgramTables:
    vocab = list(sections[0][2])
    vocab += [s for s in SPECIALS if s not in set(vocab)]
    ids = {w: i for i, w in enumerate(vocab)}
    if len(ids) != len(vocab):
        raise bad("a word is listed twice among the unigrams")
    V = len(vocab)
    keys, probs, bows = [], [], []
    for n, (p_text, b_text, w_text) in enumerate(sections, 1):
        size = len(p_text) if n > 1 else V
        prob = np.full(size, -np.inf)
        bow = np.zeros(size)
        try:
            p = np.fromiter(map(float, p_text), dtype=np.float64, count=len(p_text))
            b = np.fromiter(map(float, b_text), dtype=np.float64, count=len(b_text))
        except ValueError as e:
            raise bad(f"in \\{n}-grams: {e}") from None
        try:
            words = np.fromiter(map(ids.__getitem__, w_text), dtype=np.int64, count=len(w_text))
        except KeyError as e:
            raise bad(f"the {n}-gram word {e.args[0]!r} is not among the unigrams") from None
        words = words.reshape(len(p_text), n)
        if n == 1:
            row = words[:, 0]
            key = np.arange(V, dtype=np.int64)
        else:
            partial = NgramTables(vocab, keys, probs, bows)
            suffix = partial.find(words[:, 1:])
            if (suffix < 0).any():
                missing = " ".join(vocab[w] for w in words[np.argmax(suffix < 0), 1:])
                raise bad(f"the {n}-gram suffix {missing!r} is not listed at order {n - 1}")
            key = suffix * V + words[:, 0]
            row = np.argsort(key)
            key = key[row]
            if (np.diff(key) == 0).any():
                raise bad(f"an {n}-gram is listed twice")
            row = np.argsort(row)  # line -> sorted row
        prob[row] = p
        bow[row] = b
        prob[prob <= LOG10_ZERO] = -np.inf
        bow[bow <= LOG10_ZERO] = -np.inf
        keys.append(key)
        probs.append(prob.astype(np.float32))
        bows.append(bow.astype(np.float32))
    return NgramTables(vocab, keys, probs, bows)
