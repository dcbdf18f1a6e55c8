"""Speculative decoding: the same greedy tokens as plain decoding, samples from the same
distribution, and one-line errors where it cannot run (mock models: fast and exact)."""

import pytest
import torch
from mock_lm import EOS, BigramLM, ByteTokenizer

import lmlab
from lmlab.errors import LmlabError
from lmlab.sampling import SamplingParams, probabilities
from lmlab.speculative import Speculation, lookup


def test_lookup_copies_what_followed_the_latest_earlier_occurrence():
    #      0  1  2  3  4  5  6  7  8  9 10 11 12
    ids = [1, 2, 3, 4, 5, 6, 9, 1, 2, 3, 4, 7, 1, 2, 3, 4]
    assert lookup(ids, 2, 4, 3) == [7, 1, 2]  # the latest of two earlier occurrences of 1 2 3 4
    assert lookup(ids, 2, 4, 10) == [7, 1, 2, 3, 4]  # up to the end of the text
    assert lookup([5, 1, 2, 3, 8, 0, 2, 3, 9, 1, 2, 3], 1, 3, 2) == [8, 0]  # the longest n wins
    assert lookup([1, 2, 3, 4, 5, 6], 2, 3, 4) == []  # no earlier occurrence
    assert lookup([7, 7, 7, 7], 2, 2, 3) == [7]  # overlapping occurrences count
    assert lookup([1, 2, 1, 2], 2, 2, 0) == []


def random_bigram(seed: int = 0, scale: float = 3.0) -> BigramLM:
    gen = torch.Generator().manual_seed(seed)
    return BigramLM(torch.randn(257, 257, generator=gen) * scale)


PROMPT = "the cat sat on the mat; the cat sat on the hat; the cat"


@pytest.mark.parametrize(
    "options",
    [
        dict(max_tokens=60),
        dict(max_tokens=60, stop=["at;"]),
        dict(max_tokens=40, repetition_penalty=1.3, logprobs=True, top_logprobs=2),
        dict(max_tokens=7),
    ],
)
@pytest.mark.parametrize("how", ["prompt-lookup", "draft-model"])
def test_greedy_speculation_gives_the_plain_tokens(options, how):
    lm = random_bigram()
    plain = lmlab.generate(lm, PROMPT, temperature=0, **options)
    lm.calls.clear()
    spec = (
        dict(speculative="prompt-lookup", num_draft=6)
        if how == "prompt-lookup"
        else dict(draft_model=random_bigram(seed=0, scale=2.0))  # same argmax, other scores
    )
    out = lmlab.generate(lm, PROMPT, temperature=0, **spec, **options)
    assert out.token_ids == plain.token_ids
    assert out.text == plain.text and out.finish_reason == plain.finish_reason
    assert out.logprobs == plain.logprobs
    if "repetition_penalty" not in options and len(out.token_ids) > 20:  # the text repeats:
        # drafts were kept, fewer forward passes than tokens
        assert len(lm.calls) < len(out.token_ids)


def test_streamed_speculation_matches_generate_and_stops_at_end_of_text():
    table = torch.full((257, 257), -30.0)
    for a, b in zip(b"abcdefgh", b"bcdefgha", strict=True):
        table[a, b] = 0.0
    table[ord("h")] = -30.0
    table[ord("h"), EOS] = 0.0
    lm = BigramLM(table)
    prompt = "xabcdefgh abcdefg"
    chunks = list(lmlab.generate_stream(lm, prompt, temperature=0, speculative="prompt-lookup"))
    assert "".join(c.text for c in chunks) == "h"
    assert chunks[-1].finish_reason == "stop"
    out = lmlab.generate(lm, "abcdefgh abcdefgh abc", temperature=0, speculative="prompt-lookup")
    assert out.token_ids == [*b"defgh", EOS]  # drafted, kept, ended by the model's EOS


# --- sampling: the first three tokens' joint distribution, against the exact one -------------

SUPPORT = list(b"abc")
SAMPLING = dict(temperature=0.8, top_k=0, top_p=1.0, min_p=0.0)


def three_token_model(seed: int) -> BigramLM:
    """A bigram model over a, b, c (every other token impossible)."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.full((257, 257), float("-inf"))
    for a in SUPPORT:
        table[a, SUPPORT] = torch.randn(3, generator=gen) * 1.5
    return BigramLM(table)


def exact_joint(lm: BigramLM, first: int) -> dict[tuple[int, ...], float]:
    p = SamplingParams(**SAMPLING, max_tokens=3)
    step = {a: probabilities(lm.table[a][None], p)[0] for a in [first, *SUPPORT]}
    return {
        (x, y, z): float(step[first][x] * step[x][y] * step[y][z])
        for x in SUPPORT
        for y in SUPPORT
        for z in SUPPORT
    }


def chi_square(lm, draws: int, **spec) -> float:
    """Pearson's statistic of `draws` samples of the first three tokens against the exact
    distribution (26 degrees of freedom: 54.1 is the 0.1% critical value)."""
    # whatever the first token x, "bcab" + x occurs earlier: prompt lookup drafts the next two
    prompt = "bcabacbcabbabcabcbbcab"
    out = lmlab.generate(lm, prompt, n=draws, seed=1, max_tokens=3, **SAMPLING, **spec)
    counts: dict[tuple[int, ...], int] = {}
    for c in out.choices:
        counts[tuple(c.token_ids)] = counts.get(tuple(c.token_ids), 0) + 1
    expected = exact_joint(lm, prompt.encode()[-1])
    assert set(counts) <= set(expected)
    return sum((counts.get(k, 0) - draws * p) ** 2 / (draws * p) for k, p in expected.items())


CRITICAL = 54.1  # chi-square, 26 degrees of freedom, p = 0.001


@pytest.mark.parametrize("how", ["plain", "prompt-lookup", "draft-model"])
def test_samples_come_from_the_plain_distribution(how):
    lm = three_token_model(seed=3)
    spec = {
        "plain": {},
        "prompt-lookup": dict(speculative="prompt-lookup"),
        "draft-model": dict(draft_model=three_token_model(seed=8)),  # q differs from p
    }[how]
    assert chi_square(lm, 1200, **spec) < CRITICAL


def _accept_always(logits, p, draft, q, generator):
    return draft


def _rejected_to_p(logits, p, draft, q, generator):
    """Keep the draft with probability min(1, p(x) / q(x)), but on rejection draw from p rather
    than from max(0, p - q)."""
    from lmlab.sampling import choose, verify_draft

    kept = verify_draft(logits, p, draft, q, generator)
    return kept if kept == draft else int(choose(logits[None], p, generator)[0])


def _redraw_from_p(logits, p, draft, q, generator):
    """Keep the draft with probability p(x), else draw from p itself (the draft twice)."""
    from lmlab.sampling import choose, verify_draft

    kept = verify_draft(logits, p, draft, None, generator)
    return kept if kept == draft else int(choose(logits[None], p, generator)[0])


@pytest.mark.parametrize(
    ("rule", "how"),
    [
        (_accept_always, "prompt-lookup"),
        (_redraw_from_p, "prompt-lookup"),
        (_rejected_to_p, "draft-model"),
    ],
)
def test_the_check_catches_a_wrong_acceptance_rule(rule, how, monkeypatch):
    """The statistic above has the power to see a wrong rule, on as many draws."""
    monkeypatch.setattr("lmlab.decode.verify_draft", rule)
    lm = three_token_model(seed=3)
    spec = (
        dict(speculative="prompt-lookup")
        if how == "prompt-lookup"
        else dict(draft_model=three_token_model(seed=8))
    )
    assert chi_square(lm, 1200, **spec) > CRITICAL


# --- bad input ---------------------------------------------------------------------------


class NoRollback(BigramLM):
    def can_truncate(self) -> bool:
        return False


class OtherTokenizer(ByteTokenizer):
    def encode(self, text, *, add_special_tokens=False):
        return list(reversed(text.encode("utf-8")))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(speculative="ngram"), "speculative must be one of prompt-lookup, draft-model"),
        (dict(speculative="draft-model"), "needs draft_model"),
        (dict(speculative="prompt-lookup", num_draft=0), "num_draft must be in 1..64"),
        (dict(num_draft=4), "num_draft goes with"),
        (dict(speculative="prompt-lookup", json_object=True), "json_object"),
    ],
)
def test_bad_speculation_options_are_one_line_errors(options, message):
    with pytest.raises(LmlabError, match=message):
        lmlab.generate(BigramLM(), "abc", **options)


def test_a_model_that_cannot_roll_back_or_another_tokenizer_is_refused():
    with pytest.raises(LmlabError, match="cannot: use the llama or torch backend"):
        lmlab.generate(NoRollback(), "abc", speculative="prompt-lookup")
    draft = BigramLM()
    draft.tokenizer = OtherTokenizer()
    with pytest.raises(LmlabError, match="has another tokenizer"):
        lmlab.generate(BigramLM(), "abc", draft_model=draft)


def test_several_samples_speculate_one_after_another():
    lm = random_bigram()
    plain = lmlab.generate(lm, PROMPT, temperature=0, max_tokens=30, n=3)
    out = lmlab.generate(lm, PROMPT, temperature=0, max_tokens=30, n=3, speculative="prompt-lookup")
    assert [c.token_ids for c in out.choices] == [c.token_ids for c in plain.choices]
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert out.usage == plain.usage


def test_speculation_describes_itself():
    spec = Speculation.create(BigramLM(), "prompt-lookup")
    assert spec.describe() == "speculatively: prompt lookup (5-grams), up to 12 drafts a step"
    assert Speculation.create(BigramLM()) is None


# --- the server's engine ---------------------------------------------------------------------


def run_requests(engine, lm, requests):
    from test_engine import Collector

    from lmlab.decode import encode_prompt

    collectors = []
    for prompt, options in requests:
        params = SamplingParams.from_options(options)
        collectors.append(Collector(params.n))
        engine.submit(encode_prompt(lm, prompt), params, collectors[-1])
    for collector in collectors:
        assert collector.done.wait(30) and collector.error is None
    return collectors


def test_the_engine_speculates_for_a_sequence_alone_and_steps_several_together():
    from lmlab.serve.engine import Engine

    lm = random_bigram()
    engine = Engine(lm, max_running=4, speculation=Speculation.create(lm, "prompt-lookup"))
    greedy = dict(temperature=0, max_tokens=80)
    (alone,) = run_requests(engine, lm, [(PROMPT, greedy)])
    assert alone.texts == [lmlab.generate(lm, PROMPT, **greedy).text]
    assert engine.speculated_tokens > 10  # most tokens came from kept drafts
    requests = [
        (PROMPT, greedy),
        ("the mat; the hat", dict(greedy, stop=["at;"])),
        ("a cat", dict(temperature=1.0, seed=2, n=2, max_tokens=30)),
        ("on the", dict(greedy, json_object=True, max_tokens=5)),
    ]
    together = run_requests(engine, lm, requests)
    for (prompt, options), collector in zip(requests[:2], together[:2], strict=True):
        assert collector.texts == [lmlab.generate(lm, prompt, **options).text]
    assert engine.running == 0


# --- the two backends, on the bundled chat model ---------------------------------------------

GROUNDED = [
    {
        "role": "user",
        "content": "Copy this paragraph exactly: The library will close for renovation from "
        "the first of June until the end of August. During that time, books can be returned "
        "at the town hall, and the reading room will move to the community centre on Elm "
        "Street, open from nine to five on weekdays.",
    }
]


def counting_forward(lm) -> list[int]:
    """Record the number of tokens of each forward call on `lm`."""
    calls = []
    forward = lm.forward

    def spy(state, token_ids, **kw):
        calls.append(token_ids.shape[1])
        return forward(state, token_ids, **kw)

    lm.forward = spy
    return calls


@pytest.mark.parametrize("backend", ["llama", "torch"])
def test_truncate_forgets_what_was_read_after(backend, request):
    lm = request.getfixturevalue("fresh_llama_lm" if backend == "llama" else "torch_lm")
    a, b, c = (lm.tokenizer.encode(t) for t in ("The river bank", " was steep and", " is wide"))
    state = lm.new_state(1)
    lm.forward(state, torch.tensor([a + b]))
    lm.truncate(state, len(a))
    assert state.length == len(a)
    after = lm.forward(state, torch.tensor([c]), all_positions=True)[0]
    lm.release(state)
    fresh = lm.new_state(1)
    expected = lm.forward(fresh, torch.tensor([a + c]), all_positions=True)[0, len(a) :]
    lm.release(fresh)
    assert torch.equal(after.argmax(-1), expected.argmax(-1))
    assert torch.allclose(after.log_softmax(-1), expected.log_softmax(-1), atol=0.05)


def test_llama_backend_greedy_chat_is_the_same_token_by_token(fresh_llama_lm, gguf_path):
    lm = fresh_llama_lm
    plain = lmlab.chat(lm, GROUNDED, temperature=0, max_tokens=64)
    calls = counting_forward(lm)
    fast = lmlab.chat(lm, GROUNDED, temperature=0, max_tokens=64, speculative="prompt-lookup")
    assert fast.token_ids == plain.token_ids
    assert len(calls) < len(fast.token_ids) / 2  # most tokens came from kept drafts
    # drafts by the bundled Q4_1 file for its Q8_0 copy
    drafted = lmlab.chat(lm, GROUNDED, temperature=0, max_tokens=32, draft_model=str(gguf_path))
    assert drafted.token_ids == plain.token_ids[:32]
    assert lm.live_sequences == 0


@pytest.mark.slow
def test_torch_backend_greedy_chat_is_the_same_token_by_token(torch_lm):
    plain = lmlab.chat(torch_lm, GROUNDED, temperature=0, max_tokens=48)
    calls = counting_forward(torch_lm)
    try:
        fast = lmlab.chat(
            torch_lm, GROUNDED, temperature=0, max_tokens=48, speculative="prompt-lookup"
        )
    finally:
        del torch_lm.forward  # the session's model goes back to its own method
    assert fast.token_ids == plain.token_ids
    assert len(calls) < len(fast.token_ids) / 2


def test_cli_speculates_and_refuses_a_model_that_cannot(capsys, tmp_path):
    from lmlab.cli import main

    def run(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        return e.value.code, capsys.readouterr()

    code, out = run("generate", "The river bank", "--max-tokens", "8", "--temperature", "0",
                    "--speculative", "prompt-lookup", "--num-draft", "4")  # fmt: skip
    assert code in (0, None) and out.out.strip()
    arpa = tmp_path / "tiny.arpa"
    arpa.write_text(
        "\\data\\\nngram 1=3\n\n\\1-grams:\n-0.5\t<s>\n-0.3\t</s>\n-0.2\ta\n\n\\end\\\n"
    )
    code, out = run("generate", "a", "--model", str(arpa), "--speculative", "prompt-lookup")
    assert code == 2
    assert out.err.strip().count("\n") == 0 and "cannot: use the llama or torch backend" in out.err


@pytest.mark.slow
def test_the_server_speculates_and_answers_as_plain_decoding(fresh_llama_lm):
    from fastapi.testclient import TestClient

    from lmlab.models import DEFAULT_LM
    from lmlab.serve.app import ServerConfig, create_app

    config = ServerConfig(
        chat_models=[DEFAULT_LM], backend="llama", speculative="prompt-lookup", threads=2
    )
    app = create_app(config)
    body = {"model": DEFAULT_LM, "messages": GROUNDED, "temperature": 0, "max_tokens": 48}
    with TestClient(app) as client:
        answer = client.post("/v1/chat/completions", json=body).json()
    plain = lmlab.chat(fresh_llama_lm, GROUNDED, temperature=0, max_tokens=48)
    assert answer["choices"][0]["message"]["content"] == plain.text
    assert app.state.served.engines[DEFAULT_LM].speculated_tokens > 10
