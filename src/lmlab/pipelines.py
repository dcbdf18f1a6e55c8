"""`lmlab.pipeline(task)`: Hugging Face's pipelines, with their output shapes, offline.

Each pipeline is a callable that takes a string or a list of strings (a list gives a list of
what a string gives), and returns the same nested lists and dicts as `transformers.pipeline`:

    sentiment-analysis        [{'label': 'POSITIVE', 'score': 0.99}]
    fill-mask                 [{'score', 'token', 'token_str', 'sequence'}, ...] per [MASK]
    text-generation           [{'generated_text': '...'}]
    feature-extraction        [[[...dim floats] per token]]  (1 x tokens x dim, [CLS]/[SEP] in)
    zero-shot-classification  {'sequence', 'labels', 'scores'} (labels by score)

The default models are the bundled ones: a TextClassifier shipped in the package (MiniLM + a
logit head on SST-2), a small BERT trained here on WikiText-2, the SmolLM2 chat model and the
MiniLM encoder. Hugging Face's zero-shot pipeline uses an NLI model; none is bundled (nothing
is downloaded), so ours scores the hypotheses with lmlab's zero-shot method instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.errors import LmlabError

# task -> its class below (aliases share one)
TASKS = {
    "sentiment-analysis": "TextClassificationPipeline",
    "text-classification": "TextClassificationPipeline",
    "fill-mask": "FillMaskPipeline",
    "text-generation": "TextGenerationPipeline",
    "feature-extraction": "FeatureExtractionPipeline",
    "zero-shot-classification": "ZeroShotClassificationPipeline",
}


def pipeline(task: str, model: Any = None, **kwargs: Any) -> Pipeline:
    """A callable for `task` with Hugging Face's output shapes, over a local model.

    Args:
        task: sentiment-analysis (text-classification), fill-mask, text-generation,
            feature-extraction or zero-shot-classification.
        model: a model for the task (a name, a path or a loaded object); None for the default.
        **kwargs: the pipeline's options (e.g. backend for text-generation, via for
            zero-shot-classification).

    Returns:
        A Pipeline: call it on a string or a list of strings.

    Example:
        >>> classify = lmlab.pipeline("sentiment-analysis")
        >>> classify("Transformers library is great.")
        [{'label': 'POSITIVE', 'score': 0.9...}]
        >>> lmlab.pipeline("fill-mask")("This is a simple [MASK].", top_k=3)
    """
    if task not in TASKS:
        raise LmlabError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}", param="task")
    return globals()[TASKS[task]](model, **kwargs)


class Pipeline(ABC):
    """A task over a model: called on a string or a list, as Hugging Face's pipelines are."""

    task: str

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> Any:
        if isinstance(inputs, str):
            return self._run([inputs], **kwargs)[0]
        items = list(inputs)
        if not all(isinstance(t, str) for t in items):
            raise LmlabError(f"{self.task} takes a string or a list of strings", param="inputs")
        return self._run(items, **kwargs)

    @abstractmethod
    def _run(self, texts: list[str], **kwargs: Any) -> list[Any]:
        """One output per text."""


class TextClassificationPipeline(Pipeline):
    """[{'label', 'score'}] per text: the likeliest class of a TextClassifier and its probability.

    `model`: a TextClassifier folder (`lmlab classify fit ... --out DIR`) or a loaded one;
    default: the sentiment model in the package (POSITIVE / NEGATIVE, SST-2).
    """

    task = "sentiment-analysis"

    def __init__(self, model: Any = None) -> None:
        if hasattr(model, "predict_proba"):  # a fitted TextClassifier
            self.classifier = model
            return
        from lmlab.classify.classifier import TextClassifier

        if model is None:
            from lmlab.classify.resources import default_sentiment_folder

            model = default_sentiment_folder()
        self.classifier = TextClassifier.load(model)

    def _run(self, texts: list[str], top_k: int | None = 1) -> list[Any]:
        """top_k=1: [{'label', 'score'}] per text; top_k=None: every class, by score."""
        proba = np.asarray(self.classifier.predict_proba(texts))
        classes = [str(c) for c in self.classifier.classes_]
        k = len(classes) if top_k is None else min(top_k, len(classes))
        return [
            [{"label": classes[c], "score": float(row[c])} for c in np.argsort(-row)[:k]]
            for row in proba
        ]

    def __call__(self, inputs: str | list[str], **kwargs: Any) -> Any:
        # Hugging Face returns a one-element list for one string (unlike the other tasks).
        out = super().__call__(inputs, **kwargs)
        top_one = kwargs.get("top_k", 1) == 1
        if isinstance(inputs, str):
            return out
        return [row[0] for row in out] if top_one else out


class FillMaskPipeline(Pipeline):
    """The likeliest tokens at each [MASK]: [{'score', 'token', 'token_str', 'sequence'}].

    `model`: a `lmlab train bert` run directory or a loaded MaskedLM; default: the small BERT
    in the package (trained on WikiText-2 by scripts/train_fill_mask_model.py). One [MASK]
    gives a list of top_k dicts; several give one such list per mask (the other masks left in
    each `sequence`, as Hugging Face does).
    """

    task = "fill-mask"

    def __init__(self, model: Any = None) -> None:
        from lmlab.lm.neural.run import MaskedLM, load_masked_lm

        if model is None:
            model = default_fill_mask_folder()
        self.mlm = model if isinstance(model, MaskedLM) else load_masked_lm(model)

    def _run(self, texts: list[str], top_k: int = 5) -> list[Any]:
        if top_k < 1:
            raise LmlabError("top_k must be at least 1", param="top_k")
        return [self._fill(text, top_k) for text in texts]

    def _fill(self, text: str, top_k: int) -> list[Any]:
        import torch

        mlm, mask = self.mlm, "[MASK]"
        ids = mlm.tokenizer.encode(text, add_special_tokens=True)[: mlm.model.config.context]
        if mlm.mask_id not in ids:
            raise LmlabError(f"the text has no {mask} to fill (within the model's window)")
        probs = mlm.model.masked_distribution(torch.tensor([ids]), mlm.mask_id)  # (masks, V)
        parts = text.split(mask)
        out = []
        for m, row in enumerate(probs):
            scores, tokens = row.topk(min(top_k, row.shape[0]))
            entries = []
            for score, token in zip(scores.tolist(), tokens.tolist(), strict=True):
                token_str = mlm.tokenizer.decode([token])
                # the text with this mask filled (and any other masks left as they are); a
                # WordPiece continuation ("##s") joins the word before it, as decoding would
                before, piece = mask.join(parts[: m + 1]), token_str
                if piece.startswith("##"):
                    before, piece = before.rstrip(" "), piece[2:]
                sequence = before + piece + mask.join(parts[m + 1 :])
                entries.append(
                    {"score": score, "token": token, "token_str": token_str, "sequence": sequence}
                )
            out.append(entries)
        return out[0] if len(out) == 1 else out


def default_fill_mask_folder() -> Path:
    """The small BERT shipped in the package (src/lmlab/resources/bert-small)."""
    folder = Path(str(resources.files("lmlab"))) / "resources" / "bert-small"
    if not (folder / "model.safetensors").is_file():
        raise LmlabError(
            f"the default fill-mask model is missing ({folder}); reinstall lmlab or pass "
            "model= a `lmlab train bert` run directory"
        )
    return folder


class TextGenerationPipeline(Pipeline):
    """[{'generated_text'}] per text (num_return_sequences dicts), with `lmlab.generate`.

    `model`: a causal LM (name, path or loaded); default the bundled chat model.
    """

    task = "text-generation"

    def __init__(self, model: Any = None, *, backend: str = "auto") -> None:
        from lmlab.models import DEFAULT_LM, load_lm

        self.lm = load_lm(model or DEFAULT_LM, backend=backend)

    def _run(
        self,
        texts: list[str],
        *,
        max_new_tokens: int = 50,
        do_sample: bool = False,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        return_full_text: bool = True,
        num_return_sequences: int = 1,
        seed: int | None = None,
    ) -> list[Any]:
        """As Hugging Face: greedy unless do_sample; the prompt included unless
        return_full_text=False. Sampling options left out take the model's defaults (as
        Hugging Face takes its generation config's)."""
        from lmlab.decode import generate

        sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        options = sampling if do_sample else {"temperature": 0}
        if not do_sample and num_return_sequences > 1:
            raise LmlabError(
                "greedy decoding gives one sequence: pass do_sample=True for several",
                param="num_return_sequences",
            )
        out = []
        for text in texts:
            result = generate(
                self.lm, text, max_tokens=max_new_tokens, n=num_return_sequences, **options
            )
            prefix = text if return_full_text else ""
            out.append([{"generated_text": prefix + c.text} for c in result.choices])
        return out


class FeatureExtractionPipeline(Pipeline):
    """Token states [1][tokens][dim] per text, special tokens included (as Hugging Face).

    `model`: a transformer encoder (name, path or loaded); default all-minilm-l6-v2.
    """

    task = "feature-extraction"

    def __init__(self, model: Any = None) -> None:
        from lmlab.embed.load import load_encoder
        from lmlab.embed.transformer import TransformerEncoder
        from lmlab.models import DEFAULT_ENCODER

        self.encoder = load_encoder(model or DEFAULT_ENCODER)
        if not isinstance(self.encoder, TransformerEncoder):
            raise LmlabError(f"{self.encoder.name} has no token states", param="model")

    def _run(self, texts: list[str]) -> list[Any]:
        return [
            [self.encoder.token_vectors(t, special_tokens=True).vectors.tolist()] for t in texts
        ]


class ZeroShotClassificationPipeline(Pipeline):
    """{'sequence', 'labels', 'scores'} per text: candidate labels ranked by lmlab's zero-shot.

    Each label becomes a hypothesis (hypothesis_template, "This example is {}."). via="cosine"
    (default): the cosine of the text's embedding to each hypothesis's; via="lm": the chat
    model's log-probability of each label's word. With multi_label, each label is scored on
    its own, so the scores need not sum to 1: via="cosine", the probability that the text is
    closer to the hypothesis than a content-free text is (see `_independent`); via="lm", the
    model's P(yes) to "Question: <hypothesis> Yes or no?" after the text.

    `model`: the encoder (via="cosine") or the language model (via="lm").
    """

    task = "zero-shot-classification"

    def __init__(self, model: Any = None, *, via: str = "cosine", **options: Any) -> None:
        if via not in ("cosine", "lm"):
            raise LmlabError(f"via must be cosine or lm, not {via!r}", param="via")
        self.via, self.options = via, options
        if model is not None:
            self.options["encoder" if via == "cosine" else "model"] = str(model)

    def _run(
        self,
        texts: list[str],
        candidate_labels: str | list[str] | None = None,
        *,
        multi_label: bool = False,
        hypothesis_template: str = "This example is {}.",
    ) -> list[Any]:
        labels = _labels(candidate_labels)
        if "{}" not in hypothesis_template:
            raise LmlabError("hypothesis_template needs a {} for the label", param="template")
        if multi_label and self.via == "cosine":
            scores = self._independent(texts, [hypothesis_template.format(x) for x in labels])
        elif multi_label:
            scores = np.stack(
                [self._entailment(texts, label, hypothesis_template) for label in labels], 1
            )
        else:
            hypotheses = {label: hypothesis_template.format(label) for label in labels}
            scores = self._zero_shot(texts, labels, hypotheses)
        out = []
        for text, row in zip(texts, scores, strict=True):
            order = np.argsort(-row, kind="stable")
            out.append(
                {
                    "sequence": text,
                    "labels": [labels[i] for i in order],
                    "scores": [float(row[i]) for i in order],
                }
            )
        return out

    def _zero_shot(self, texts: list[str], labels: list[str], hypotheses: dict) -> np.ndarray:
        from lmlab.classify.prompting import ZeroShot

        if self.via == "cosine":
            method = ZeroShot(via="cosine", descriptions=hypotheses, **self.options)
        else:  # the label's own word is scored after the prompt
            words = {label: label for label in labels}
            method = ZeroShot(via="lm", verbalizers=words, **self.options)
        return method.fit([], np.array([]), labels).predict_proba(texts)

    def _independent(self, texts: list[str], hypotheses: list[str]) -> np.ndarray:
        """P(each hypothesis holds), label by label (n, labels), from embedding cosines:
        sigmoid((cos(text, hypothesis) - c0) / T), where c0 is the hypothesis's mean cosine
        with the content-free texts ("N/A", "", "[MASK]") and T the zero-shot temperature.

        A score is above 0.5 when the text is closer to the label than a text that says
        nothing is, so it does not depend on the other candidates. The reference is the
        hypothesis's own (contextual calibration, as the LM path's): some labels are close to
        everything. Scoring a label against its negation ("This example is not {}.") does not
        work with sentence embeddings, which hardly see the "not"."""
        from lmlab.classify.prompting import CONTENT_FREE, COSINE_TEMPERATURE
        from lmlab.embed.load import encode
        from lmlab.models import DEFAULT_ENCODER

        encoder = self.options.get("encoder", DEFAULT_ENCODER)
        temperature = self.options.get("temperature", COSINE_TEMPERATURE)
        anchors = encode(hypotheses, encoder)  # (labels, d), L2-normalised
        reference = (encode(list(CONTENT_FREE), encoder) @ anchors.T).mean(axis=0)
        logits = (encode(texts, encoder) @ anchors.T - reference) / temperature
        return 1 / (1 + np.exp(-logits))

    def _entailment(self, texts: list[str], label: str, template: str) -> np.ndarray:
        """P(the hypothesis holds) for one label, by the LM: "yes" against "no" to the
        question of the hypothesis (calibrated), as NLI's entailment against contradiction."""
        from lmlab.classify.prompting import ZeroShot

        hypothesis = template.format(label).replace("{", "{{").replace("}", "}}")
        prompt = "{text}\nQuestion: " + hypothesis + " Yes or no?\nAnswer:"
        method = ZeroShot(via="lm", template=prompt, **self.options)
        return method.fit([], np.array([]), ["yes", "no"]).predict_proba(texts)[:, 0]


def _labels(candidate_labels: str | list[str] | None) -> list[str]:
    """Hugging Face accepts a list or one comma-separated string."""
    if isinstance(candidate_labels, str):
        candidate_labels = [s.strip() for s in candidate_labels.split(",")]
    labels = [str(label) for label in candidate_labels or [] if str(label).strip()]
    if not labels:
        raise LmlabError(
            "pass candidate_labels=[...]: at least one label", param="candidate_labels"
        )
    if len(set(labels)) != len(labels):
        raise LmlabError("candidate_labels has duplicates", param="candidate_labels")
    return labels
