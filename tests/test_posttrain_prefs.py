"""Making preference data: the rule checks one by one, and `lmlab prefs make` end to end on a
tiny chat model (rules and a judge model)."""

import json

import pytest
from posttrain_models import no_chat_model, tiny_chat_lm
from test_cli import lmlab as lmlab_cli

from lmlab.errors import LmlabError
from lmlab.posttrain.prefs import check, constraints


@pytest.mark.parametrize(
    ("text", "rules", "met"),
    [
        ("The sea is wide and blue.", {"max_words": 6}, True),
        ("The sea is wide and very blue.", {"max_words": 6}, False),
        ("- apple\n- pear\n* plum", {"bullets": 3}, True),
        ("- apple\n- pear", {"bullets": 3}, False),
        ("cats sleep a lot.", {"lowercase": True}, True),
        ("Cats sleep a lot.", {"lowercase": True}, False),
        ("It ends with the word ocean.", {"ends_with": "ocean"}, True),
        ("Ocean it ends not with.", {"ends_with": "ocean"}, False),
        ("Bread needs YEAST to rise.", {"include": "yeast"}, True),
        ("Bread needs flour.", {"include": "yeast"}, False),
        ('{"name": "Ada", "age": 36}', {"json_keys": ["name", "age"]}, True),
        ('```json\n{"name": "Ada", "age": 36}\n```', {"json_keys": ["name", "age"]}, True),
        ('{"name": "Ada"}', {"json_keys": ["name", "age"]}, False),
        ("name: Ada, age: 36", {"json_keys": ["name", "age"]}, False),
    ],
)
def test_each_rule(text, rules, met):
    assert check(text, rules) == {next(iter(rules)): met}


def test_a_prompt_row_without_a_constraint_names_its_line():
    with pytest.raises(LmlabError, match="line 3: no constraint to check"):
        constraints({"prompt": "hi"}, "p.jsonl line 3")


@pytest.mark.skipif(no_chat_model, reason="no bundled chat model")
def test_prefs_make_writes_pairs_that_dpo_reads(tmp_path):
    from lmlab.posttrain.data import preference_rows
    from lmlab.posttrain.prefs import check

    model = tiny_chat_lm(tmp_path / "tiny")
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "Say something short.", "max_words": 3},
            {"prompt": "Mention the sea.", "include": "the"},
            {"prompt": "Answer in lowercase.", "lowercase": True}]  # fmt: skip
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prefs.jsonl"
    done = lmlab_cli("prefs", "make", str(prompts), "--model", str(model), "--samples", "4",
                     "--max-tokens", "6", "--temperature", "1.5", "--out", str(out),
                     "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["prompts"] == 3 and result["pairs"] + result["ties"] == 3
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(pairs) == result["pairs"]
    by_prompt = {r["prompt"]: r for r in rows}
    for p in pairs:  # the chosen answer meets more of the row's constraints than the rejected
        rules = {k: v for k, v in by_prompt[p["prompt"]].items() if k != "prompt"}
        assert sum(check(p["chosen"], rules).values()) > sum(check(p["rejected"], rules).values())
    if pairs:
        assert len(preference_rows(out)) == len(pairs)
    # A judge model: every prompt gets a pair unless the verdicts tie.
    done = lmlab_cli("prefs", "make", str(prompts), "--model", str(model), "--judge",
                     str(model), "--samples", "2", "--max-tokens", "4", "--out",
                     str(tmp_path / "judged.jsonl"), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    judged = [json.loads(x) for x in (tmp_path / "judged.jsonl").read_text().splitlines()]
    assert all(p["chosen_score"] > p["rejected_score"] for p in judged)
    # Bad input: no constraint for the rules; nothing written.
    prompts.write_text('{"prompt": "hi"}\n')
    done = lmlab_cli("prefs", "make", str(prompts), "--model", str(model), "--out",
                     str(tmp_path / "none.jsonl"))  # fmt: skip
    assert done.returncode == 2 and "line 1: no constraint" in done.stderr
    assert not (tmp_path / "none.jsonl").exists()
