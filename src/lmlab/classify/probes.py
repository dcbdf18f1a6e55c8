"""Probes: a small classifier on the frozen vectors of any encoder ("fancy logit").

A text x becomes a vector φ(x) (all-minilm-l6-v2 by default, any `lmlab.load_encoder` spec, or
a bag-of-words / TF-IDF encoder fitted on the training texts), and a head maps φ(x) to class
probabilities:

  logit  multinomial logistic regression, P(y = k | x) = softmax(W φ(x) + b)_k, fitted by
         maximum likelihood (cross-entropy) with an optional penalty (scikit-learn):
           l2    + ||W||² / (2C)     (ridge; the default, C = 1)
           l1    + ||W||₁ / C        (LASSO: many weights exactly zero; on bag-of-words the
                                      words left are the "selected features")
           none  plain maximum likelihood
  lasso  logit with the l1 penalty.
  mlp    one hidden ReLU layer (torch), trained with AdamW on cross-entropy in the one training
         loop (lmlab.training); a held-out slice of the training texts stops it early and picks
         the best epoch. Same seed, same head.

A probe saves its head (head.safetensors), probe.json (the encoder spec and its dimension) and,
for bow/tfidf, the fitted vectorizer (encoder/); never the encoder's weights.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lmlab.classify.method import Method
from lmlab.embed.base import Encoder
from lmlab.errors import LmlabError
from lmlab.models import DEFAULT_ENCODER

FITTED_ENCODERS = {"bow": "counts", "tfidf": "tfidf"}  # encoder option -> weighting
PENALTIES = ("l2", "l1", "none")
SHOWN_FEATURES = 200  # selected features kept in `info` (the count covers all of them)
CHUNK = 1024  # texts per progress-bar step when encoding

# The vectors of the last two (encoder, texts) pairs: `lmlab classify compare` fits several
# probes on the same training texts and scores them on the same test texts; encode once.
_MEMO: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()


class _Probe(Method):
    """An encoder (loaded, or fitted on the training texts) and a head on its vectors."""

    def __init__(self, encoder: str | Encoder = DEFAULT_ENCODER) -> None:
        self.encoder_spec = encoder
        self.info = {}
        self._encoder: Encoder | None = None

    # -- encoder ------------------------------------------------------------------------------
    def _fit_encoder(self, texts: list[str]) -> None:
        spec = self.encoder_spec
        if isinstance(spec, str) and spec in FITTED_ENCODERS:
            from lmlab.embed.sparse import BagOfWordsEncoder

            self._encoder = BagOfWordsEncoder.fit(texts, weighting=FITTED_ENCODERS[spec])
        else:
            self._encoder = load_probe_encoder(spec)
            # Record where it came from, so the saved classifier finds it again.
            self.options["encoder"] = self._encoder.spec or self._encoder.name

    def _vectors(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return encode_texts(self._encoder, texts, progress=progress)

    def _save_encoder(self, folder: Path, head_dimension: int) -> None:
        spec = self.options["encoder"]
        if spec in FITTED_ENCODERS:
            self._encoder.save(folder / "encoder")
        meta = {"encoder": spec, "encoder_name": self._encoder.name, "dimension": head_dimension}
        (folder / "probe.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False))

    def _load_encoder_for(self, folder: Path) -> dict[str, Any]:
        """Load the encoder a saved head was fitted on; an error if its vectors do not fit."""
        try:
            meta = json.loads((folder / "probe.json").read_text())
        except (OSError, ValueError):
            raise LmlabError(f"{folder} has no readable probe.json; save it again") from None
        spec = self.options["encoder"]
        if spec in FITTED_ENCODERS:
            from lmlab.embed.sparse import BagOfWordsEncoder

            self._encoder = BagOfWordsEncoder.load(folder / "encoder")
        else:
            self._encoder = load_probe_encoder(spec)
        if self._encoder.dimension != meta["dimension"]:
            raise LmlabError(
                f"encoder {self._encoder.name} gives {self._encoder.dimension}-d vectors but "
                f"the classifier in {folder} was fitted on {meta['dimension']}-d vectors of "
                f"{meta['encoder_name']}; load it with that encoder",
                param="encoder",
            )
        return meta


def encode_texts(encoder: Encoder, texts: list[str], *, progress: bool = False) -> np.ndarray:
    """The encoder's vectors of `texts`, with a progress bar. The last two results of an encoder
    loaded by name or path (one with a `spec`; not a vocabulary fitted here) are remembered, so
    probes fitted in turn on the same texts encode them once."""
    key = None
    if encoder.spec:
        digest = hashlib.sha1("\0".join(texts).encode("utf-8", "replace")).hexdigest()
        key = (encoder.spec, f"{len(texts)}:{digest}")
        if key in _MEMO:
            _MEMO.move_to_end(key)
            return _MEMO[key]
    parts = []
    desc = f"encoding ({encoder.name})"
    quiet = not progress or len(texts) <= CHUNK  # a bar for a blink is noise
    with tqdm(total=len(texts), unit="text", desc=desc, disable=quiet) as bar:
        for i in range(0, len(texts), CHUNK):
            parts.append(encoder.encode(texts[i : i + CHUNK]))
            bar.update(len(parts[-1]))
    vectors = np.concatenate(parts) if parts else np.zeros((0, encoder.dimension), np.float32)
    if key is not None:
        _MEMO[key] = vectors
        while len(_MEMO) > 2:
            _MEMO.popitem(last=False)
    return vectors


def load_probe_encoder(spec: str | Encoder) -> Encoder:
    """The encoder of a probe, by spec; loaded once per process (the last two stay loaded)."""
    if isinstance(spec, Encoder):
        return spec
    from lmlab.embed.load import _cached

    return _cached(str(spec))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)  # exp of a non-positive number never overflows
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Logit(_Probe):
    """Multinomial logistic regression on an encoder's vectors.

    Args:
        encoder: an encoder spec (default all-minilm-l6-v2), or bow / tfidf to fit a
            vocabulary on the training texts.
        penalty: l2, l1 (LASSO) or none.
        C: inverse penalty strength; smaller C, smaller (for l1: fewer non-zero) weights.
        class_weight: None, "balanced" (weights inversely proportional to class frequency),
            or {label: weight}.
        max_iter: most solver iterations.

    Example:
        >>> TextClassifier("logit", encoder="tfidf", penalty="l1", C=2.0).fit(texts, labels)
    """

    name = "logit"

    def __init__(
        self,
        encoder: str | Encoder = DEFAULT_ENCODER,
        penalty: str = "l2",
        C: float = 1.0,
        class_weight: str | dict[str, float] | None = None,
        max_iter: int = 1000,
    ) -> None:
        super().__init__(encoder)
        if penalty not in PENALTIES:
            raise LmlabError(
                f"penalty must be one of {', '.join(PENALTIES)}, not {penalty!r}", param="penalty"
            )
        if not C > 0:
            raise LmlabError(f"C must be positive, not {C}", param="C")
        if class_weight not in (None, "balanced") and not isinstance(class_weight, dict):
            raise LmlabError("class_weight must be balanced, a {label: weight} dict or None")
        self.penalty, self.C, self.class_weight, self.max_iter = penalty, C, class_weight, max_iter
        self.options = {
            "encoder": encoder if isinstance(encoder, str) else encoder.spec,
            "penalty": penalty,
            "C": C,
            "class_weight": class_weight,
            "max_iter": max_iter,
        }

    def fit(
        self, texts: list[str], y: np.ndarray, classes: list[str], *, progress: bool = True
    ) -> Logit:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        self._fit_encoder(texts)
        X = self._vectors(texts, progress).astype(np.float64)  # float32 would cap the precision
        weights = self.class_weight
        if isinstance(weights, dict):
            unknown = [k for k in weights if str(k) not in classes]
            if unknown:
                raise LmlabError(f"class_weight names unknown classes: {unknown}")
            weights = {classes.index(str(k)): float(w) for k, w in weights.items()}
        model = LogisticRegression(
            C=np.inf if self.penalty == "none" else self.C,
            l1_ratio=1.0 if self.penalty == "l1" else 0.0,
            solver="saga" if self.penalty == "l1" else "lbfgs",  # lbfgs cannot do l1
            class_weight=weights,
            max_iter=self.max_iter,
            # lbfgs: scikit-learn's tol 1e-4 leaves probabilities ~1e-3 off the optimum without a
            # penalty; 1e-6 is cheap for it. saga keeps 1e-4 (each of its epochs is costly).
            tol=1e-4 if self.penalty == "l1" else 1e-6,
            random_state=0,  # saga visits samples in a random order: fix it
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X, y)
        # Binary fits have one weight vector w (class 1 against class 0): softmax([0, z]) is
        # sigmoid(z), so a zero row for class 0 gives the same probabilities as (K, d) rows.
        W, b = model.coef_, model.intercept_
        if len(classes) == 2:
            W, b = np.vstack([np.zeros_like(W), W]), np.concatenate([[0.0], b])
        # C order: safetensors writes the raw buffer, and scikit-learn's coef_ can be Fortran.
        self.W_ = np.ascontiguousarray(W, dtype=np.float64)
        self.b_ = np.ascontiguousarray(b, dtype=np.float64)
        self.info = {"features": int(X.shape[1]), "nonzero_weights": int((W != 0).sum())}
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            self.info["converged"] = False
        if self.penalty == "l1":
            self.info.update(self._selected(classes))
        return self

    def _selected(self, classes: list[str]) -> dict[str, Any]:
        """The features with a non-zero weight for some class, largest |weight| first."""
        W = self.W_[1:] if len(classes) == 2 else self.W_
        rows = classes[1:] if len(classes) == 2 else classes
        keep = np.flatnonzero(np.abs(W).max(axis=0) > 0)
        order = keep[np.argsort(-np.abs(W[:, keep]).max(axis=0), kind="stable")]
        vocabulary = getattr(self._encoder, "vocabulary", None)
        shown = [
            {
                "feature": vocabulary[j] if vocabulary is not None else int(j),
                "weights": {c: round(float(W[r, j]), 6) for r, c in enumerate(rows)},
            }
            for j in order[:SHOWN_FEATURES]
        ]
        return {"selected_count": len(keep), "selected_features": shown}

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        X = self._vectors(texts).astype(np.float64)
        return _softmax(X @ self.W_.T + self.b_)

    def save(self, folder: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"weight": self.W_, "bias": self.b_}, str(folder / "head.safetensors"))
        self._save_encoder(folder, self.W_.shape[1])

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> Logit:
        from safetensors.numpy import load_file

        probe = cls(**options)
        probe._load_encoder_for(folder)
        head = load_file(str(folder / "head.safetensors"))
        probe.W_, probe.b_ = head["weight"], head["bias"]
        if probe.W_.shape[0] != len(classes):
            raise LmlabError(f"{folder}: the head has {probe.W_.shape[0]} classes, not {classes}")
        return probe


class Lasso(Logit):
    """`logit` with the l1 penalty (LASSO): a sparse head; see Logit for the options."""

    name = "lasso"

    def __init__(
        self,
        encoder: str | Encoder = DEFAULT_ENCODER,
        penalty: str = "l1",
        C: float = 1.0,
        class_weight: str | dict[str, float] | None = None,
        max_iter: int = 1000,
    ) -> None:
        if penalty != "l1":
            raise LmlabError("lasso is logit with penalty l1; use method logit for others")
        super().__init__(encoder, penalty, C, class_weight, max_iter)


class MLP(_Probe):
    """One hidden layer on frozen vectors: softmax(W₂ relu(W₁ φ(x) + b₁) + b₂).

    Args:
        encoder: as for Logit.
        hidden: width of the hidden layer.
        epochs: most passes over the training vectors.
        lr: AdamW learning rate.
        batch_size: vectors per step.
        weight_decay: AdamW weight decay.
        dropout: dropout on the hidden layer while training.
        patience: stop after this many epochs without a better held-out loss.
        valid_fraction: share of the training texts held out to stop early (none when fewer
            than 20 texts: then it trains all epochs).
        seed: weights, dropout, batch order and the held-out slice.
    """

    name = "mlp"

    def __init__(
        self,
        encoder: str | Encoder = DEFAULT_ENCODER,
        hidden: int = 256,
        epochs: int = 100,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 0.01,
        dropout: float = 0.1,
        patience: int = 5,
        valid_fraction: float = 0.1,
        seed: int = 0,
    ) -> None:
        super().__init__(encoder)
        checks = [
            ("hidden", hidden, hidden >= 1, "must be at least 1"),
            ("epochs", epochs, epochs >= 1, "must be at least 1"),
            ("batch_size", batch_size, batch_size >= 1, "must be at least 1"),
            ("patience", patience, patience >= 1, "must be at least 1"),
            ("lr", lr, lr > 0, "must be positive"),
            ("weight_decay", weight_decay, weight_decay >= 0, "must be >= 0"),
            ("dropout", dropout, 0 <= dropout < 1, "must be in [0, 1)"),
            ("valid_fraction", valid_fraction, 0 <= valid_fraction < 1, "must be in [0, 1)"),
        ]
        for name, value, ok, rule in checks:
            if not ok:
                raise LmlabError(f"{name} {rule}, got {value}", param=name)
        self.hidden, self.epochs, self.lr, self.batch_size = hidden, epochs, lr, batch_size
        self.weight_decay, self.dropout, self.patience = weight_decay, dropout, patience
        self.valid_fraction, self.seed = valid_fraction, seed
        self.options = {
            "encoder": encoder if isinstance(encoder, str) else encoder.spec,
            "hidden": hidden,
            "epochs": epochs,
            "lr": lr,
            "batch_size": batch_size,
            "weight_decay": weight_decay,
            "dropout": dropout,
            "patience": patience,
            "valid_fraction": valid_fraction,
            "seed": seed,
        }

    def _build(self, d: int, k: int):
        from torch import nn

        return nn.Sequential(
            nn.Linear(d, self.hidden),
            nn.ReLU(),
            nn.Dropout(self.dropout),
            nn.Linear(self.hidden, k),
        )

    def fit(
        self,
        texts: list[str],
        y: np.ndarray,
        classes: list[str],
        *,
        progress: bool = True,
        workdir: str | Path | None = None,
        resume: bool = False,
    ) -> MLP:
        """Fit the head on the encoder's vectors of `texts`. `workdir` keeps the training's
        checkpoint/, metrics.jsonl and loss.png (none given: a temporary folder, removed
        after); `resume` continues the run in it, exactly."""
        import torch

        self._fit_encoder(texts)
        X = torch.from_numpy(self._vectors(texts, progress)).float()
        Y = torch.from_numpy(np.asarray(y)).long()
        threads = torch.get_num_threads()
        # A head this small gains nothing from threads, and on a busy machine their spin-waits
        # made steps ~10x slower; one thread while training, the caller's setting after.
        torch.set_num_threads(1)
        try:
            self._train(X, Y, len(classes), progress, workdir, resume)
        finally:
            torch.set_num_threads(threads)
        return self

    def _train(self, X, Y, k: int, progress: bool, workdir, resume: bool) -> None:
        """Epochs of shuffled batches in the training loop, validated after each epoch on the
        held-out slice (early stopping with `patience`; the best epoch's head is kept)."""
        import math

        import torch

        from lmlab.classify.fit_loop import fit_with_loop
        from lmlab.training.objectives.classify import SequenceClassification, ShuffledRows
        from lmlab.training.results import TrainConfig

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # here without touching the caller's generator
            g = torch.Generator().manual_seed(self.seed)
            order = torch.randperm(len(X), generator=g)
            n_valid = int(len(X) * self.valid_fraction) if len(X) >= 20 else 0
            valid, train = order[:n_valid], order[n_valid:]
            self.head_ = head = self._build(X.shape[1], k)
            opt = torch.optim.AdamW(head.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            per_epoch = math.ceil(len(train) / self.batch_size)
            config = TrainConfig(
                steps=self.epochs * per_epoch, batch_size=self.batch_size, lr=self.lr,
                min_lr=self.lr, warmup=0, grad_clip=0.0, eval_every=per_epoch,
                log_every=per_epoch, patience=self.patience if n_valid else None,
                seed=self.seed, device="cpu", dtype="float32",
            )  # fmt: skip
            source = ShuffledRows(X, Y, train, self.batch_size, g)
            held_out = [((X[valid],), Y[valid])] if n_valid else None
            objective = SequenceClassification(source, torch.device("cpu"), valid=held_out,
                                               units_per_batch=self.batch_size)  # fmt: skip
            result = fit_with_loop(head, objective, opt, config, total=config.steps,
                                   device=torch.device("cpu"), workdir=workdir, resume=resume,
                                   progress=progress, prefix="lmlab-mlp-")  # fmt: skip
        head.eval()
        self.info = {"epochs_run": math.ceil(result.steps / per_epoch), "held_out": n_valid}
        checks = [r for r in result.history if "valid_loss" in r and not r.get("final")]
        if checks:
            best = min(checks, key=lambda r: r["valid_loss"])  # the first of equals, as kept
            self.info.update(best_epoch=best["step"] // per_epoch,
                             valid_loss=round(best["valid_loss"], 6))  # fmt: skip

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        X = torch.from_numpy(self._vectors(texts)).float()
        with torch.no_grad():
            return torch.softmax(self.head_(X).double(), dim=1).numpy()

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file(self.head_.state_dict(), str(folder / "head.safetensors"))
        self._save_encoder(folder, self.head_[0].in_features)

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> MLP:
        from safetensors.torch import load_file

        probe = cls(**options)
        meta = probe._load_encoder_for(folder)
        probe.head_ = probe._build(meta["dimension"], len(classes))
        try:
            probe.head_.load_state_dict(load_file(str(folder / "head.safetensors")))
        except (OSError, RuntimeError) as e:
            raise LmlabError(f"{folder}: cannot read the mlp head: {e}".splitlines()[0]) from None
        probe.head_.eval()
        return probe
