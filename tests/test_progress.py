"""Library calls draw nothing: their progress goes to the display lmlab.progress has installed
(the CLI's rich bars), and their notes to logging (issue 29)."""

from __future__ import annotations

import contextlib
import logging

import pytest

import lmlab
from lmlab import progress


class Recorder:
    """A display that remembers each task's (total, unit, desc) and how far it advanced."""

    def __init__(self) -> None:
        self.tasks: list[list] = []

    @contextlib.contextmanager
    def __call__(self, total, unit, desc):
        task = [total, unit, desc, 0]
        self.tasks.append(task)

        def advance(n=1):
            task[3] += n

        yield advance


@pytest.fixture
def recorder():
    recorder = Recorder()
    previous = progress.set_display(recorder)
    yield recorder
    progress.set_display(previous)


def test_embed_file_prints_nothing_and_reports_to_the_display(tmp_path, capfd, recorder):
    texts = tmp_path / "texts.txt"
    texts.write_text("the bank\nthe river\nmoney\n")
    progress.set_display(None)  # nothing installed: a plain library call
    lmlab.embed_file(texts, tmp_path / "a.npy")
    assert capfd.readouterr() == ("", "")
    progress.set_display(recorder)
    lmlab.embed_file(texts, tmp_path / "b.npy")
    lmlab.embed_file(texts, tmp_path / "c.npy", progress=False)  # asked for no report
    assert capfd.readouterr() == ("", "")
    assert [(unit, desc, done) for _, unit, desc, done in recorder.tasks] == [
        ("texts", "embedding", 3)
    ]


def test_a_call_can_send_its_progress_to_a_display_of_its_own(recorder):
    own = Recorder()
    with progress.task(10, unit="steps", desc="mine", progress=own) as advance:
        advance(4)
        advance(6)
    assert own.tasks == [[10, "steps", "mine", 10]] and recorder.tasks == []


def test_ngram_training_reports_the_bytes_it_reads(tmp_path, capfd, recorder):
    from lmlab.lm.ngram.model import NgramLM

    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\nb c a\n" * 50)
    NgramLM.train(corpus, order=2, progress=True)
    assert capfd.readouterr() == ("", "")
    assert recorder.tasks == [[corpus.stat().st_size, "B", "reading", corpus.stat().st_size]]


def test_a_bundled_model_that_cannot_be_requantized_is_a_logged_warning(monkeypatch, caplog, capfd):
    import lmlab.lm.gguf_requantize as requantize
    from lmlab.errors import LmlabError
    from lmlab.models import DEFAULT_LM, llama_file, resolve

    def refuse(path, kind):
        raise LmlabError("no room")

    monkeypatch.setattr(requantize, "requantized", refuse)
    # the CLI turns propagation off and adds its own handler (in-process CLI tests leave it)
    monkeypatch.setattr(logging.getLogger("lmlab"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("lmlab"), "handlers", [])
    ref = resolve(DEFAULT_LM)
    with caplog.at_level(logging.WARNING, logger="lmlab"):
        assert llama_file(ref) == ref.path
    assert capfd.readouterr() == ("", "")
    assert "copy could not be made (no room)" in caplog.text


def test_train_ngram_has_the_progress_flag_of_every_train_command(tmp_path, recorder):
    import lmlab
    from lmlab.cli import _run

    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c\nb c a\n" * 50)
    assert _run(["train", "ngram", str(corpus), "-o", str(tmp_path / "a"), "--no-progress"]) == 0
    lmlab.train("ngram", [corpus], tmp_path / "b", progress=False)
    assert recorder.tasks == []
    assert _run(["train", "ngram", str(corpus), "-o", str(tmp_path / "c"), "--progress"]) == 0
    lmlab.train("ngram", [corpus], tmp_path / "d", progress=True)
    assert [task[2] for task in recorder.tasks] == ["reading", "reading"]
