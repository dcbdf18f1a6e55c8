"""The command line as a user runs it: real processes, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import pytest

GREEDY = ["--temperature", "0"]


def lmlab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmlab", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
    )


def test_help_lists_every_command():
    out = lmlab("--help")
    assert out.returncode == 0
    for command in ("models", "tokenize", "generate", "chat", "score"):
        assert command in out.stdout
        assert lmlab(command, "--help").returncode == 0


def test_tokenize_shows_the_lecture_example():
    out = lmlab("tokenize", "hello, hugging face", "--model", "all-minilm-l6-v2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "['hello', ',', 'hugging', 'face']",
        "[7592, 1010, 17662, 2227]",
    ]
    vocab = json.loads(lmlab("tokenize", "--vocab", "--model", "all-minilm-l6-v2", "--json").stdout)
    assert vocab["size"] == 30522 and vocab["special"] == 5


def test_generate_greedy_continues_the_prompt():
    out = lmlab("generate", "The capital of France is", "--max-tokens", "8", *GREEDY)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_generate_says_why_a_chat_model_gives_an_empty_continuation():
    # the bundled instruct model ends a bare question at once: the user learns why, and what to do
    out = lmlab("generate", "What is the capital of France?", *GREEDY)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    assert 'lmlab chat "What is the capital of France?"' in out.stderr
    said = lmlab("generate", "The capital of France is", "--max-tokens", "4", *GREEDY)
    assert "lmlab chat" not in said.stderr


def test_generate_json_has_choices_and_usage():
    out = lmlab(
        "generate", "Once upon a time", "--max-tokens", "5", "--n", "2", "--seed", "3", "--json"
    )
    data = json.loads(out.stdout)
    assert len(data["choices"]) == 2
    assert data["usage"]["completion_tokens"] == sum(len(c["token_ids"]) for c in data["choices"])


def test_chat_answers_one_message_and_runs_a_conversation():
    out = lmlab(
        "chat",
        "What is the capital of France?",
        "--system",
        "You are a terse geography tutor.",
        *GREEDY,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    session = lmlab(
        "chat",
        "--system",
        "You are a terse assistant.",
        *GREEDY,
        stdin="My name is Ada.\n/reset\nhello\n/exit\n",
    )
    assert session.returncode == 0, session.stderr
    assert "(conversation cleared)" in session.stdout


def test_score_reports_perplexity_and_per_token_surprisal(tmp_path):
    data = json.loads(lmlab("score", "The man bites the dog.", "--per-token", "--json").stdout)
    assert data["tokens"] == len(data["per_token"]) > 3
    assert data["perplexity"] > 1
    assert data["per_token"][0]["surprisal_bits"] == pytest.approx(
        -data["per_token"][0]["logprob"] / 0.6931471805599453
    )
    text_file = tmp_path / "text.txt"
    text_file.write_text("The man bites the dog.")
    from_file = json.loads(lmlab("score", str(text_file), "--json").stdout)
    assert from_file["perplexity"] == pytest.approx(data["perplexity"], rel=1e-6)
    as_text = json.loads(lmlab("score", str(text_file), "--text", "--json").stdout)
    assert as_text["tokens"] != from_file["tokens"]  # the path itself, scored as a string


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "hi", "--temperature", "-1"], "temperature must be >= 0"),
        (["generate", "hi", "--top-p", "1.5"], "top_p must be in (0, 1]"),
        (["generate", "hi", "--top-p", "0"], "top_p must be in (0, 1]"),
        (["generate", "hi", "--top-k", "-1"], "top_k must be >= 0"),
        (["generate", "hi", "--max-tokens", "0"], "max_tokens must be at least 1"),
        (["generate", "hi", "--n", "0"], "n must be at least 1"),
        (["generate", ""], "prompt is empty"),
        (["generate", "hi", "--model", "nope"], "unknown model 'nope'"),
        (["generate", "hi", "--backend", "cuda"], "'cuda' is not one of"),
        (["generate", "hi", "--bogus"], "No such option: --bogus"),
        (["generate", "word " * 9000, "--max-tokens", "1"], "context window is 8192"),
        (["score", "hi", "--model", "all-minilm-l6-v2"], "not a causal language model"),
        (["score", "ptb6O.txt"], "no file 'ptb6O.txt' (to score it as text, add --text)"),
        (["tokenize"], "give a TEXT"),
        (["chat", "hi", "--temperature", "-2"], "temperature must be >= 0"),
        (["nonsense"], "No such command"),
        (["serve", "--prefill-chunk", "0"], "--prefill-chunk must be at least 1"),
        (["tokenizer", "train", "c.txt", "--out", "t", "--show-merges", "-1"], "'--show-merges'"),
        (["cluster", "texts.txt", "--top", "0"], "'--top'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, message):
    out = lmlab(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in out.stderr


def test_a_path_that_cannot_be_written_exits_2_with_one_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = lmlab("tokenizer", "train", str(corpus), "--kind", "char", "--out", str(blocker / "tok"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


def test_a_corrupt_gguf_file_exits_2(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    out = lmlab("generate", "hi", "--model", str(bad))
    assert out.returncode == 2 and "bad.gguf" in out.stderr
    assert "Traceback" not in out.stderr


def test_output_piped_into_head_ends_quietly(tmp_path):
    words = [f"w{i % 997}x{i % 89}" for i in range(20000)]
    (tmp_path / "corpus.txt").write_text(" ".join(words))
    command = [sys.executable, "-m", "lmlab", "tokenizer", "train", str(tmp_path / "corpus.txt")]
    command += ["--out", str(tmp_path / "tok"), "--vocab-size", "6000", "--show-merges", "5000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout.readline()  # read one line, then close the pipe as `head -1` does
        process.stdout.close()
        stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr, stderr
