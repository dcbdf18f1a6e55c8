"""An n-gram language model from corpus counts, behind the same interface as every lmlab LM.

Design choices:
- The Markov assumption: p(w_i | w_1 .. w_{i-1}) ~ p(w_i | w_{i-N+1} .. w_{i-1}); the state of a
  row is just its last N-1 word ids, so decoding, scoring and chat work unchanged.
- Words are whitespace-separated tokens, one sentence per line, framed by `<s>` and `</s>`;
  `encode(text, add_special_tokens=True)` prepends `<s>` (as Llama tokenizers add BOS), so an
  empty prompt starts a sentence and generation ends at `</s>`; a line break encodes as `</s>`,
  after which the next sentence starts (so `lmlab score FILE` reads the file's sentences as
  `lmlab eval` does).
- Smoothing (estimate.py): mle, add-k, interpolated Kneser–Ney, interpolated modified
  Kneser–Ney (Chen & Goodman 1998, the default). Every estimator is stored as a backoff model,
  so the ARPA file (arpa.py) is the model: it loads in SRILM and KenLM, and theirs load here.
- Counts and probabilities are numpy arrays in a reversed trie (counts.py, tables.py), never
  dicts of tuples; scoring a test set is vectorised.
- Perplexity follows SRILM's `ngram -ppl`: every word and every `</s>` is scored, `<s>` is not;
  words outside the vocabulary are left out of the sum and counted as OOV (in the history they
  stand as `<unk>`). PPL = 10 ** (-sum log10 p / (words - OOV + sentences)).

A run directory (`save`, `lmlab train ngram --out DIR`) holds `model.arpa` (or `.arpa.gz`),
`model.npz` (the same tables as arrays, plus raw counts, for instant loading) and `lmlab.json`.

References: Chen & Goodman (1998), An empirical study of smoothing techniques for language
modeling, TR-10-98, Harvard; Jurafsky & Martin, Speech and Language Processing, ch. 3.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lmlab.deprecation import renamed_kwargs
from lmlab.errors import LmlabError
from lmlab.lm.base import LanguageModel, State
from lmlab.lm.ngram.arpa import read_arpa, write_arpa
from lmlab.lm.ngram.counts import BOS, EOS, UNK, count_ngrams, read_corpus, read_sentences
from lmlab.lm.ngram.estimate import SMOOTHINGS, estimate
from lmlab.lm.ngram.tables import NgramTables
from lmlab.runs import RUN_FILE
from lmlab.text.tokenizer import Tokenizer

if TYPE_CHECKING:
    import torch

    from lmlab.results import Evaluation

LN10 = math.log(10)
NPZ_FILE = "model.npz"


@dataclass
class NgramConfig:
    """How an n-gram model is estimated (saved in lmlab.json)."""

    order: int = 3
    smoothing: str = "mkn"  # mle, add-k, kn or mkn
    k: float = 1.0  # add-k's pseudo-count (1 = Laplace)
    min_count: int = 1  # rarer words become <unk>
    max_vocab: int | None = None  # keep only the most frequent words
    lowercase: bool = False
    tokenizer: str | None = None  # a model whose tokenizer splits lines; None: whitespace

    def check(self) -> None:
        if self.order < 1:
            raise LmlabError(f"--order must be at least 1 (got {self.order})", param="order")
        if self.smoothing not in SMOOTHINGS:
            raise LmlabError(
                f"unknown smoothing {self.smoothing!r}; choose {', '.join(SMOOTHINGS)}",
                param="smoothing",
            )
        if self.smoothing == "add-k" and not 0 < self.k < math.inf:
            raise LmlabError(f"add-k needs a finite --k > 0 (got {self.k})", param="k")


class WordTokenizer(Tokenizer):
    """Whitespace words; `<s>` starts, `</s>` ends a sentence; unknown words are `<unk>`.

    With `pieces` (another model's tokenizer), the "words" are that tokenizer's tokens
    (e.g. 'Ġthe', '##ing'), and decoding goes through it.
    """

    bos_token = "<s>"
    eos_token = "</s>"

    def __init__(
        self, vocab: list[str], *, lowercase: bool = False, pieces: Tokenizer | None = None
    ) -> None:
        self.vocab = vocab
        self.lowercase = lowercase
        self.pieces = pieces
        self.ids = {w: i for i, w in enumerate(vocab)}
        self._piece_ids: dict[str, int] = {}

    def split(self, text: str) -> list[str]:
        """The words of `text` (lowercase applied by the caller, as in training)."""
        return self.pieces.tokens(text) if self.pieces is not None else text.split()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset({BOS, EOS})

    @property
    def eos_ids(self) -> frozenset[int]:
        return frozenset({EOS})

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Word ids; a line break after a sentence is its `</s>` (one sentence per line, as
        the model was trained), so a text of several lines is scored as `lmlab eval` does."""
        ids = [BOS] if add_special_tokens else []
        lines = (text.lower() if self.lowercase else text).split("\n")
        for i, line in enumerate(lines):
            ended = i < len(lines) - 1  # lines are cut at "\n" only, as the corpus was read
            words = self.split(line + "\n" if ended else line)
            ids.extend(self.ids.get(w, UNK) for w in words)
            if words and ended:
                ids.append(EOS)
        return ids

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        skip = self.special_ids if skip_special_tokens else frozenset()
        words = [self.vocab[i] for i in ids if i not in skip]
        if self.pieces is None:
            return " ".join(words)
        if not self._piece_ids:
            self._piece_ids = {self.pieces.id_to_token(i): i for i in range(self.pieces.vocab_size)}
        # runs of the other tokenizer's pieces decode through it; our own specials stay words
        runs = [
            " ".join(group)
            if not known
            else self.pieces.decode([self._piece_ids[w] for w in group])
            for known, group in itertools.groupby(words, key=lambda w: w in self._piece_ids)
        ]
        return " ".join(r.strip() for r in runs)

    def id_to_token(self, token_id: int) -> str:
        return self.vocab[token_id]


class NgramState(State):
    """The last N-1 word ids of every row."""

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.history: list[list[int]] = [[] for _ in range(batch_size)]


class NgramLM(LanguageModel):
    """A backoff n-gram model: numpy tables, a word tokenizer, the LanguageModel interface.

    Example:
        >>> lm = NgramLM.train(["ptb.train.txt"], order=3)
        >>> lm.prob("street", ["wall"])            # p(street | wall)
        >>> lm.evaluate_file("ptb.test.txt").perplexity
        >>> lm.save("runs/ptb3")                     # model.arpa + model.npz + lmlab.json
    """

    def __init__(
        self,
        tables: NgramTables,
        *,
        config: NgramConfig | None = None,
        counts: list[np.ndarray] | None = None,
        info: dict | None = None,
        name: str = "ngram",
    ) -> None:
        self.tables = tables
        self.config = config or NgramConfig(order=tables.order)
        self.counts = counts  # raw counts aligned with tables.keys (None from a bare ARPA file)
        self.info = info or {}  # what training recorded: corpus, sizes, discounts, seconds
        self.name = name
        pieces = None
        if self.config.tokenizer:
            from lmlab.models import load_tokenizer

            pieces = load_tokenizer(self.config.tokenizer)
        self.tokenizer = WordTokenizer(tables.vocab, lowercase=self.config.lowercase, pieces=pieces)
        self.context_length = 1 << 20  # no window: only the last N-1 words matter

    @property
    def order(self) -> int:
        return self.tables.order

    # ---- building ----------------------------------------------------------------------
    @classmethod
    @renamed_kwargs(show_progress="progress")
    def train(
        cls, corpus: str | Path | list[str | Path], *, progress: bool = False, **options
    ) -> NgramLM:
        """Estimate a model from one or more text files (one sentence per line).

        Args:
            corpus: a path or a list of paths.
            progress: report the reading's progress (lmlab.progress shows it); the name every
                trainer uses (`show_progress=` is deprecated).
            **options: the fields of NgramConfig (order, smoothing, k, min_count, max_vocab,
                lowercase, tokenizer).
        """
        config = NgramConfig(**options)
        config.check()
        paths = [corpus] if isinstance(corpus, str | Path) else list(corpus)
        start = time.perf_counter()
        text = read_corpus(
            paths,
            lowercase=config.lowercase,
            min_count=config.min_count,
            max_vocab=config.max_vocab,
            split=splitter(config.tokenizer),
            progress=progress,
        )
        counts = count_ngrams(text, config.order)
        model = cls.from_counts(counts, config)
        model.info = {
            "corpus": [str(p) for p in paths],
            "sentences": text.n_sentences,
            "words": text.n_words,
            "unk_words": text.n_unk,
            "vocab_size": len(text.vocab),
            "ngrams": model.tables.sizes,
            "discounts": model.info["discounts"],
            "seconds": round(time.perf_counter() - start, 3),
        }
        return model

    @classmethod
    def from_counts(cls, counts, config: NgramConfig) -> NgramLM:
        """Smooth counts (of at least config.order orders) into a model of config.order."""
        config.check()
        est = estimate(counts, config.order, config.smoothing, config.k)
        n = config.order
        with np.errstate(divide="ignore"):
            tables = NgramTables(
                counts.vocab,
                counts.keys[:n],
                [np.log10(p).astype(np.float32) for p in est.prob],
                [
                    np.where(ctx, np.log10(b), 0.0).astype(np.float32)
                    for b, ctx in zip(est.bow, est.is_context, strict=True)
                ],
            )
        tables.log10_bow[-1][:] = 0.0  # the highest order is never a context
        return cls(
            tables, config=config, counts=counts.counts[:n], info={"discounts": est.discounts}
        )

    @classmethod
    def from_arpa(cls, path: str | Path, *, lowercase: bool = False) -> NgramLM:
        """Load an ARPA file (SRILM, KenLM or lmlab; .gz too)."""
        tables = read_arpa(path)
        config = NgramConfig(order=tables.order, smoothing="arpa", lowercase=lowercase)
        return cls(tables, config=config, name=Path(path).name)

    # ---- saving and loading ------------------------------------------------------------
    def save(self, folder: str | Path, *, gzip: bool = False) -> Path:
        """Write the run directory atomically: ARPA file, numpy tables, lmlab.json."""
        from lmlab.home import atomic_dir

        folder = Path(folder)
        arpa_name = "model.arpa.gz" if gzip else "model.arpa"
        with atomic_dir(folder, replaces=RUN_FILE) as tmp:
            write_arpa(self.tables, tmp / arpa_name)
            arrays = {"vocab": np.array(self.tables.vocab)}
            for n in range(1, self.order + 1):
                arrays[f"keys{n}"] = self.tables.keys[n - 1]
                arrays[f"log10_prob{n}"] = self.tables.log10_prob[n - 1]
                arrays[f"log10_bow{n}"] = self.tables.log10_bow[n - 1]
                if self.counts is not None:
                    arrays[f"counts{n}"] = self.counts[n - 1]
            np.savez(tmp / NPZ_FILE, **arrays)
            meta = {"kind": "ngram", "arpa": arpa_name, **asdict(self.config), **self.info}
            (tmp / RUN_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> NgramLM:
        """Load a run directory written by `save` (from model.npz, else from the ARPA file)."""
        folder = Path(folder)
        meta = json.loads((folder / RUN_FILE).read_text())
        fields = NgramConfig.__dataclass_fields__
        config = NgramConfig(**{k: v for k, v in meta.items() if k in fields})
        info = {k: v for k, v in meta.items() if k not in fields and k not in ("kind", "arpa")}
        if not (folder / NPZ_FILE).is_file():
            tables = read_arpa(folder / meta.get("arpa", "model.arpa"))
            return cls(tables, config=config, info=info, name=folder.name)
        try:
            with np.load(folder / NPZ_FILE) as z:
                n = sum(1 for k in z.files if k.startswith("keys"))
                tables = NgramTables(
                    z["vocab"].tolist(),
                    [z[f"keys{i}"] for i in range(1, n + 1)],
                    [z[f"log10_prob{i}"] for i in range(1, n + 1)],
                    [z[f"log10_bow{i}"] for i in range(1, n + 1)],
                )
                counts = [z[f"counts{i}"] for i in range(1, n + 1)] if "counts1" in z else None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            message = f"{folder / NPZ_FILE} is damaged ({e}); train the model again"
            raise LmlabError(message) from None
        return cls(tables, config=config, counts=counts, info=info, name=folder.name)

    # ---- probabilities -----------------------------------------------------------------
    def prob(self, word: str, context: list[str] | str = ()) -> float:
        """p(word | context) under the model (context words as strings; `<s>` allowed)."""
        context, (word,) = self.words_of(context), self.words_of([word])
        ids = self.tokenizer.ids
        history = [ids.get(w, UNK) for w in context][-(self.order - 1) :] if self.order > 1 else []
        return float(10 ** self.tables.next_log10(history)[ids.get(word, UNK)])

    def words_of(self, words: list[str] | str) -> list[str]:
        """Words as the model read its corpus: lowercased if it was trained with --lowercase."""
        words = words.split() if isinstance(words, str) else list(words)
        return [w.lower() for w in words] if self.config.lowercase else words

    def count(self, words: list[str] | str) -> int:
        """Raw training count of an n-gram (0 when unseen); needs counts (not a bare ARPA)."""
        if self.counts is None:
            raise LmlabError("this model was loaded from an ARPA file, which holds no counts")
        words = self.words_of(words)
        if not 1 <= len(words) <= self.order:
            return 0
        ids = self.tokenizer.ids
        if any(w not in ids for w in words):
            return 0
        row = self.tables.find(np.array([[ids[w] for w in words]]))[0]
        return int(self.counts[len(words) - 1][row]) if row >= 0 else 0

    # ---- the LanguageModel interface ---------------------------------------------------
    def new_state(self, batch_size: int = 1) -> NgramState:
        return NgramState(batch_size)

    def forward(
        self, state: NgramState, token_ids: torch.Tensor, *, all_positions: bool = False
    ) -> torch.Tensor:
        import torch

        ids = token_ids.tolist()
        steps = len(ids[0]) if ids else 0
        keep = self.order - 1
        out = np.empty((len(ids), steps if all_positions else 1, self.vocab_size), np.float32)
        for b, row in enumerate(ids):
            history = state.history[b]
            for t, token in enumerate(row):
                history.append(token)
                if token in (BOS, EOS):  # a new sentence: nothing before it counts
                    history[:] = [BOS]
                if all_positions or t == steps - 1:
                    context = history[-keep:] if keep else []
                    out[b, t if all_positions else 0] = self.tables.next_log10(context) * LN10
            state.history[b] = history[-max(keep, 1) :]
        state.length += steps
        logits = torch.from_numpy(out)
        return logits if all_positions else logits[:, 0]

    # ---- evaluation --------------------------------------------------------------------
    def evaluate_file(self, path: str | Path) -> Evaluation:
        """Perplexity of a text file, one sentence per line, as SRILM's `ngram -ppl` counts it.

        Returns:
            an Evaluation (perplexity, loss in nats per token, tokens scored, sentences, OOV).
        """
        from lmlab.results import Evaluation

        # a literal <s> or </s> in the text would break the framing: it is out of vocabulary
        ids = {w: i for w, i in self.tokenizer.ids.items() if i not in (BOS, EOS)}
        stream: list[int] = []
        split = self.tokenizer.split
        for words in read_sentences([path], lowercase=self.config.lowercase, split=split):
            stream.append(BOS)
            stream.extend(map(ids.get, words, itertools.repeat(-1)))
            stream.append(EOS)
        if not stream:
            raise LmlabError(f"no sentence to score in {path}", param="path")
        tokens = np.array(stream, dtype=np.int64)
        oov = tokens < 0
        tokens[oov] = UNK  # an unknown word stands as <unk> in the history of the next ones
        logp = self.tables.score_stream(tokens)
        scored = (tokens != BOS) & ~oov
        total = float(logp[scored].sum())  # log10
        n = int(scored.sum())
        sentences = int((tokens == BOS).sum())
        loss = -total * LN10 / n
        return Evaluation(
            perplexity=math.exp(loss),
            loss=loss,
            tokens=n,
            sentences=sentences,
            oov=int(oov.sum()),
            words=len(tokens) - 2 * sentences,
            convention="srilm",
        )


def splitter(tokenizer: str | None):
    """How corpus lines become words: whitespace, or the tokens of a model's tokenizer."""
    if not tokenizer:
        return str.split
    from lmlab.models import load_tokenizer

    return load_tokenizer(tokenizer).tokens


def load_run(folder: str | Path, **options) -> NgramLM:
    """The loader of run kind "ngram" (lmlab.runs.RUN_KINDS)."""
    _no_options(options)
    return NgramLM.load(folder)


def load_arpa(path: str | Path, **options) -> NgramLM:
    """The loader of .arpa files for lmlab.load_lm (lmlab.models.ARPA_LOADER)."""
    _no_options(options)
    return NgramLM.from_arpa(path)


def _no_options(options: dict) -> None:
    if options:
        raise LmlabError(f"n-gram models take no load options (got {', '.join(options)})")
