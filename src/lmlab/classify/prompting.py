"""Classification without training a head: zero-shot and few-shot prompting.

zero-shot, via="lm" ("argmax of the next word"): the prompt is filled with the text, and each
class is scored by the log-probability the language model gives its verbalizer (a word such as
" positive") right after the prompt; a verbalizer of several tokens sums their log-probabilities.
P(class | text) = softmax over the classes of these log-probabilities. With `calibrate=True`
the probabilities are divided by those the model gives a content-free text ("N/A", "" and
"[MASK]", averaged) and renormalised: contextual calibration (Zhao et al. 2021, "Calibrate
Before Use"), which removes the model's prior preference for some verbalizers.

zero-shot, via="cosine": the cosine of the text's embedding to each class description's
embedding, softmax(cos / temperature).

few-shot: k labelled examples drawn from the training data (balanced over the classes, seeded)
are shown as earlier turns of a chat (user: text, assistant: label); the model answers the new
text greedily, and the answer is parsed to a class (case-insensitive, by verbalizer or class
name). Answers that name no class are counted in info["unparseable"]; their row is the class
distribution of the training data (the best guess knowing nothing about the text).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.classify.data import label_text
from lmlab.classify.method import Method, check_classes, class_indices
from lmlab.errors import LmlabError
from lmlab.home import atomic_write_text
from lmlab.lm.base import LanguageModel
from lmlab.models import DEFAULT_ENCODER, DEFAULT_LM

STATE_FILE = "prompting.json"  # what fit set up: few-shot examples, class prior, calibration
# The plain prompt, followed by " " + verbalizer. The best of the generic ones measured on
# SST-2 (a task's own words do better: "Review: {text}\nSentiment:"). A template may also use
# {labels}, the verbalizers listed ("negative or positive").
PLAIN_TEMPLATE = "{text}\nThis text is"
# The user turn of a chat; the answer begins the assistant's turn.
CHAT_TEMPLATE = "{text}\n\nIs this text {labels}? Answer with one word."
CONTENT_FREE = ("N/A", "", "[MASK]")  # Zhao et al.'s content-free inputs
COSINE_TEMPERATURE = 0.05  # of the softmax over cosines (MiniLM's cosines differ by ~0.1)
PROGRESS_FROM = 50  # texts: fewer are classified without a progress bar
FEW_SHOT_INSTRUCTION = "Classify each text as one of: {labels}. Answer with one word."


@lru_cache(maxsize=2)
def _lm(spec: str, backend: str, threads: int | None) -> LanguageModel:
    """The language model of a spec, kept loaded across calls (predict in a loop is cheap)."""
    from lmlab.models import load_lm

    options = {} if threads is None else {"n_threads": threads}
    return load_lm(spec, backend=backend, **options)


def _model(options: dict[str, Any]) -> LanguageModel:
    return _lm(options["model"], options["backend"], options["threads"])


def verbalizer_logprobs(
    lm: LanguageModel,
    prompts: list[list[int]],
    verbalizers: list[list[int]],
    *,
    progress: bool = False,
) -> np.ndarray:
    """log P(verbalizer | prompt) for every prompt and verbalizer: a float array (n, L).

    The prompts are read together (`forward_each`: one llama.cpp batch for several texts); the
    first token of every verbalizer is scored from that one pass. A verbalizer of several tokens
    reads its own tokens after the prompt to score the rest.

    Example:
        >>> lm = lmlab.load_lm("smollm2-135m-instruct")
        >>> ids = lm.tokenizer.encode("Review: great fun.\\nSentiment:", add_special_tokens=True)
        >>> verbalizer_logprobs(lm, [ids], [lm.tokenizer.encode(w) for w in (" bad", " good")])
    """
    import torch

    if any(not v for v in verbalizers):
        raise LmlabError("a verbalizer is empty (it has no tokens)", param="verbalizers")
    out = np.zeros((len(prompts), len(verbalizers)))
    first = torch.tensor([v[0] for v in verbalizers])
    longest = max(map(len, verbalizers))
    for group in _progress(_groups(lm, prompts, longest), progress):
        rows = [prompts[i] for i in group]
        logp = _read(lm, rows, [[] for _ in rows])[0]  # (B, V): the first verbalizer token
        out[group] = logp[:, first].numpy()
        for j, verb in enumerate(verbalizers):
            if len(verb) == 1:
                continue
            # Read the verbalizer's tokens but its last; step t predicts verb[t + 1].
            steps = _read(lm, rows, [verb[:-1]] * len(rows))
            for t, logp in enumerate(steps[1:]):
                out[group, j] += logp[:, verb[t + 1]].numpy()
    return out


def _groups(lm: LanguageModel, prompts: list[list[int]], tail: int) -> list[list[int]]:
    """Prompt indices in groups read together: at most max_batch_size rows, and (for a model
    whose rows share one cache, as llama.cpp's) at most context_length tokens in all."""
    groups: list[list[int]] = [[]]
    size = 0
    for i, ids in enumerate(prompts):
        need = len(ids) + tail
        if groups[-1] and (len(groups[-1]) == lm.max_batch_size or size + need > lm.context_length):
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += need
    return groups if groups[0] else []


def _read(lm: LanguageModel, prompts: list[list[int]], tails: list[list[int]]):
    """Read each prompt, then its tail token by token; the next-token log-distribution (B, V)
    after the prompt and after each tail token, as a list of len(tail) + 1 tensors."""
    states = [lm.new_state(1) for _ in prompts]
    try:
        logits = lm.forward_each(states, prompts)
        out = [logits.log_softmax(-1)]
        for t in range(len(tails[0])):
            logits = lm.forward_each(states, [[tail[t]] for tail in tails])
            out.append(logits.log_softmax(-1))
        return out
    finally:
        for state in states:
            lm.release(state)


def _softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _verbalizers(classes: list, given: dict | None) -> list[str]:
    """The word for each class: `given[class]`, else the class name in lower case (classes
    and keys compare as labels: 1 and "1" are one class)."""
    given = {label_text(k): v for k, v in (given or {}).items()}
    unknown = set(given) - {label_text(c) for c in classes}
    if unknown:
        raise LmlabError(
            f"verbalizers name unknown classes: {', '.join(sorted(unknown))}", param="verbalizers"
        )
    words = [str(given.get(label_text(c), label_text(c).lower())) for c in classes]
    _distinct(classes, words, "word", "verbalizers")
    return words


def _distinct(classes: list[str], words: list[str], what: str, param: str) -> None:
    """Two classes with the same word (or description) get the same score, so the first always
    wins: an error naming them. Compared without case or surrounding spaces, as answers are."""
    owner: dict[str, tuple[str, str]] = {}  # word, folded -> (class, word)
    for c, w in zip(classes, words, strict=True):
        key = w.strip().lower()
        if key in owner:
            first, word = owner[key]
            raise LmlabError(
                f"two classes share the {what} {word!r} ({first} and {c}): "
                f"give each class its own {what}",
                param=param,
            )
        owner[key] = c, w.strip()


class ZeroShot(Method):
    """Zero-shot classification by LM scoring (via="lm") or by embedding cosine (via="cosine").

    Args:
        via: "lm" (verbalizer log-probabilities) or "cosine" (similarity to descriptions).
        model: the language model (via="lm"), a bundled name or a path.
        chat: wrap the prompt in the model's chat template (on SST-2 the plain prompt does
            better with the bundled model: see the README).
        template: the prompt, with {text} and optionally {labels} (the verbalizers, joined).
        verbalizers: class -> word (default: the class name in lower case).
        calibrate: contextual calibration (divide by the content-free probabilities); it
            lifts the bundled model from always answering one class on SST-2.
        encoder: the encoder (via="cosine").
        descriptions: class -> description to embed (default: its verbalizer).
        temperature: of the softmax over cosines (via="cosine").
        backend: for GGUF models: auto, torch or llama.
        threads: CPU threads of the llama backend (default: all; 1 is faster on a busy CPU).

    Example:
        >>> zs = ZeroShot(verbalizers={"0": "negative", "1": "positive"})
        >>> zs.fit([], np.array([]), ["0", "1"]).predict_proba(["A gripping, funny film."])
    """

    name = "zero-shot"

    def __init__(
        self,
        *,
        via: str = "lm",
        model: str = DEFAULT_LM,
        chat: bool = False,
        template: str | None = None,
        verbalizers: dict[str, str] | None = None,
        calibrate: bool = True,
        encoder: str = DEFAULT_ENCODER,
        descriptions: dict[str, str] | None = None,
        temperature: float = COSINE_TEMPERATURE,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        if via not in ("lm", "cosine"):
            raise LmlabError(f"via must be lm or cosine, not {via!r}", param="via")
        if temperature <= 0:
            raise LmlabError("temperature must be positive", param="temperature")
        if template is not None and "{text}" not in template:
            raise LmlabError("the template needs a {text} placeholder", param="template")
        self.options = dict(
            via=via, model=str(model), chat=chat, template=template, verbalizers=verbalizers,
            calibrate=calibrate, encoder=str(encoder), descriptions=descriptions,
            temperature=temperature, backend=backend, threads=threads,
        )  # fmt: skip
        self.info: dict[str, Any] = {}

    def fit(
        self, texts: list[str], y: np.ndarray, classes: list[str], *, progress: bool = True
    ) -> ZeroShot:
        """Set up the classes (zero-shot learns nothing from `texts` and `y`); calibrate if
        asked. `classes_` keeps the labels as given; `predict` returns them."""
        self.classes_ = check_classes(classes)
        self.verbalizers_ = _verbalizers(self.classes_, self.options["verbalizers"])
        self.calibration_: list[float] | None = None
        if self.options["via"] == "cosine":
            self._descriptions()  # two classes described alike: an error now, not at predict
        if self.options["via"] == "lm" and self.options["calibrate"]:
            free = self._lm_scores(list(CONTENT_FREE), calibrated=False)
            self.calibration_ = _softmax(free).mean(axis=0).tolist()
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        if self.options["via"] == "cosine":
            return self._cosine(texts)
        return _softmax(self._lm_scores(texts, calibrated=True))

    def _lm_scores(self, texts: list[str], *, calibrated: bool) -> np.ndarray:
        """Log-probabilities (n, classes) of the verbalizers, calibrated when asked."""
        lm = _model(self.options)
        chat = self._uses_chat(lm)
        # After a plain prompt the answer is a next word (" positive"); in a chat it begins
        # the assistant's turn ("positive").
        words = [w if chat else " " + w for w in self.verbalizers_]
        verbs = [lm.tokenizer.encode(w) for w in words]
        longest = max(map(len, verbs))
        prompts = [self._prompt(lm, t, chat, room=lm.context_length - longest) for t in texts]
        scores = verbalizer_logprobs(lm, prompts, verbs, progress=len(texts) >= PROGRESS_FROM)
        if calibrated and self.calibration_ is not None:
            # p_calibrated ∝ p / p_content_free: subtract the logs, softmax renormalises.
            scores = scores - np.log(np.asarray(self.calibration_))
        return scores

    def _uses_chat(self, lm: LanguageModel) -> bool:
        if self.options["chat"] and lm.tokenizer.chat_template is None:
            raise LmlabError(f"{lm.name} has no chat template; pass chat=False", param="chat")
        return self.options["chat"]

    def _prompt(self, lm: LanguageModel, text: str, chat: bool, room: int) -> list[int]:
        """Prompt ids for one text; a prompt too long for the window keeps its last tokens."""
        template = self.options["template"] or (CHAT_TEMPLATE if chat else PLAIN_TEMPLATE)
        labels = ", ".join(self.verbalizers_[:-1]) + " or " + self.verbalizers_[-1]
        filled = template.format(text=text, labels=labels)
        if chat:
            from lmlab.decode import render

            ids = render(lm, [{"role": "user", "content": filled}])
        else:
            ids = lm.tokenizer.encode(filled, add_special_tokens=True)
        return ids[-room:]

    def _cosine(self, texts: list[str]) -> np.ndarray:
        from lmlab.embed.load import encode

        descriptions = self._descriptions()
        vectors = encode(texts, self.options["encoder"])  # (n, d), L2-normalised
        anchors = encode(descriptions, self.options["encoder"])  # (classes, d)
        return _softmax(vectors @ anchors.T / self.options["temperature"])

    def _descriptions(self) -> list[str]:
        """What each class is embedded as (via="cosine"): its description, else its word."""
        given = {label_text(k): d for k, d in (self.options["descriptions"] or {}).items()}
        descriptions = [
            str(given.get(label_text(c), v))
            for c, v in zip(self.classes_, self.verbalizers_, strict=True)
        ]
        _distinct(self.classes_, descriptions, "description", "descriptions")
        return descriptions

    def save(self, folder: Path) -> None:
        state = {"calibration": self.calibration_}
        atomic_write_text(Path(folder) / STATE_FILE, json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> ZeroShot:
        method = cls(**options)
        method.classes_ = check_classes(classes)
        method.verbalizers_ = _verbalizers(method.classes_, options.get("verbalizers"))
        method.calibration_ = _read_state(folder).get("calibration")
        return method


def draw_shots(y: np.ndarray, n_classes: int, k: int, seed: int) -> list[int]:
    """Indices of k training examples, balanced over the classes, in a seeded random order.

    Each class gets k // n_classes examples and the first k % n_classes classes (in a seeded
    order) one more; a class with too few examples leaves its places to the others.
    """
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(y == c))) for c in range(n_classes)]
    if k > len(y):
        raise LmlabError(f"shots={k} but there are only {len(y)} training examples", param="shots")
    order = list(rng.permutation(n_classes))
    picked: list[int] = []
    while len(picked) < k:  # round-robin over the classes that still have examples
        for c in order:
            if pools[c] and len(picked) < k:
                picked.append(int(pools[c].pop()))
    return [picked[i] for i in rng.permutation(len(picked))]


def few_shot_messages(
    examples: list[tuple[str, str]], text: str, labels: list[str]
) -> list[dict[str, str]]:
    """The chat of a few-shot prompt: an instruction, one user/assistant pair per example
    (text, its label's word), then the new text.

    Example:
        >>> few_shot_messages([("Great!", "positive")], "Dull.", ["negative", "positive"])
    """
    system = FEW_SHOT_INSTRUCTION.format(labels=", ".join(labels))
    messages = [{"role": "system", "content": system}]
    for example, label in examples:
        messages += [{"role": "user", "content": example}, {"role": "assistant", "content": label}]
    return [*messages, {"role": "user", "content": text}]


def few_shot_text(examples: list[tuple[str, str]], text: str, labels: list[str]) -> str:
    """The same prompt for a model without a chat template: "Text: ...\\nLabel: ..." blocks."""
    head = FEW_SHOT_INSTRUCTION.format(labels=", ".join(labels))
    blocks = [f"Text: {example}\nLabel: {label}" for example, label in examples]
    return "\n\n".join([head, *blocks, f"Text: {text}\nLabel:"])


def parse_answer(answer: str, names: list[list[str]]) -> int | None:
    """The class an answer names: the first class one of whose `names` (verbalizer, class
    name) the answer starts with, else the only class named anywhere in it; else None."""
    text = answer.strip().lower()
    words = re.findall(r"\w+", text)
    for c, options in enumerate(names):
        if any(text.startswith(n.lower()) for n in options if n):
            return c
    found = {c for c, options in enumerate(names) for n in options if n.lower() in words}
    return found.pop() if len(found) == 1 else None


class FewShot(Method):
    """Few-shot in-context classification with a chat (or causal) language model.

    Args:
        shots: examples in the prompt (k), balanced over the classes.
        seed: which examples are drawn.
        model: the language model, a bundled name or a path.
        chat: use the model's chat template (default: when it has one).
        verbalizers: class -> word shown as the label (default: the class name in lower case).
        max_tokens: the longest answer generated.
        backend: for GGUF models: auto, torch or llama.
        threads: CPU threads of the llama backend (default: all; 1 is faster on a busy CPU).

    Example:
        >>> fs = FewShot(shots=4).fit(train_texts, y, ["negative", "positive"])
        >>> fs.predict_proba(["A gripping, funny film."]), fs.info["unparseable"]
    """

    name = "few-shot"

    def __init__(
        self,
        *,
        shots: int = 4,
        seed: int = 0,
        model: str = DEFAULT_LM,
        chat: bool | None = None,
        verbalizers: dict[str, str] | None = None,
        max_tokens: int = 5,
        backend: str = "auto",
        threads: int | None = None,
    ) -> None:
        if shots < 0:
            raise LmlabError("shots must be 0 or more", param="shots")
        self.options = dict(
            shots=shots, seed=seed, model=str(model), chat=chat, verbalizers=verbalizers,
            max_tokens=max_tokens, backend=backend, threads=threads,
        )  # fmt: skip
        self.info: dict[str, Any] = {}

    def fit(
        self, texts: list[str], y: np.ndarray, classes: list[str], *, progress: bool = True
    ) -> FewShot:
        """Draw the examples shown in every prompt, and the class prior of `y`.

        `y` holds labels from `classes` ("negative", ...) or their indices; `classes_` keeps
        the labels as given, and `predict` returns them.
        """
        self.classes_ = check_classes(classes)
        y = class_indices(y, self.classes_)
        if len(y) != len(texts):
            raise LmlabError(f"{len(texts)} texts but {len(y)} labels", param="y")
        self.verbalizers_ = _verbalizers(self.classes_, self.options["verbalizers"])
        picked = draw_shots(y, len(classes), self.options["shots"], self.options["seed"])
        self.examples_ = [(texts[i], self.classes_[y[i]]) for i in picked]
        counts = np.bincount(y, minlength=len(classes)) if len(y) else np.ones(len(classes))
        self.prior_ = (counts / counts.sum()).tolist()
        return self

    def prompt(self, lm: LanguageModel, text: str) -> list[int]:
        """Prompt ids of `text`, after the k examples."""
        from lmlab.decode import render

        verbal = {label_text(c): v for c, v in zip(self.classes_, self.verbalizers_, strict=True)}
        examples = [(t, verbal[label_text(c)]) for t, c in self.examples_]
        chat = self.options["chat"]
        if chat is None:
            chat = lm.tokenizer.chat_template is not None
        if chat:
            return render(lm, few_shot_messages(examples, text, self.verbalizers_))
        return lm.tokenizer.encode(
            few_shot_text(examples, text, self.verbalizers_), add_special_tokens=True
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """One-hot rows for parsed answers, the class prior for unparseable ones."""
        from lmlab.decode import generate

        lm = _model(self.options)
        names = [[v, label_text(c)] for v, c in zip(self.verbalizers_, self.classes_, strict=True)]
        out = np.tile(np.asarray(self.prior_), (len(texts), 1))
        unparseable: list[str] = []
        for i, text in enumerate(_progress(texts, len(texts) >= PROGRESS_FROM)):
            answer = generate(
                lm,
                self.prompt(lm, text),
                temperature=0,
                max_tokens=self.options["max_tokens"],
                stop=["\n"],
            ).text
            c = parse_answer(answer, names)
            if c is None:
                unparseable.append(answer)
            else:
                out[i] = np.eye(len(self.classes_))[c]
        self.info = {"unparseable": len(unparseable), "unparseable_examples": unparseable[:5]}
        return out

    def save(self, folder: Path) -> None:
        state = {"examples": self.examples_, "prior": self.prior_}
        atomic_write_text(Path(folder) / STATE_FILE, json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, options: dict[str, Any], classes: list[str]) -> FewShot:
        method = cls(**options)
        method.classes_ = check_classes(classes)
        method.verbalizers_ = _verbalizers(method.classes_, options.get("verbalizers"))
        state = _read_state(folder)
        method.examples_ = [tuple(e) for e in state["examples"]]
        method.prior_ = state["prior"]
        return method


def _progress(items: list, show: bool):
    """`items` (texts, or groups of texts), under a progress bar counting texts when `show`."""
    return _with_bar(items) if show else items


def _with_bar(items: list):
    from lmlab.progress import task

    count = (lambda item: len(item)) if items and isinstance(items[0], list) else (lambda _: 1)
    with task(sum(map(count, items)), unit="texts", desc="prompting") as advance:
        for item in items:
            yield item
            advance(count(item))


def _read_state(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        raise LmlabError(f"cannot read {Path(folder) / STATE_FILE}: {e}") from None
