"""Chat templates render turns as the model's template says, and as transformers renders them."""

import pytest
from mock_lm import BigramLM

import lmlab
from lmlab.errors import LmlabError
from lmlab.text.chat_template import render_chat

CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}],
    [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "Thanks — ünïcode too"},
    ],
]


def test_smollm_template_renders_system_user_assistant_turns(llama_lm):
    text = llama_lm.tokenizer.render_chat(CONVERSATIONS[2])
    assert text == (
        "<|im_start|>system\nYou answer in French.<|im_end|>\n"
        "<|im_start|>user\nHello<|im_end|>\n"
        "<|im_start|>assistant\nBonjour !<|im_end|>\n"
        "<|im_start|>user\nThanks — ünïcode too<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # without a system message the template inserts its own default one
    assert llama_lm.tokenizer.render_chat(CONVERSATIONS[0]).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM"
    )


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_rendering_equals_transformers_apply_chat_template(torch_lm, gguf_path, messages):
    from transformers import AutoTokenizer

    from lmlab.lm.gguf_cache import cache_folder

    reference = AutoTokenizer.from_pretrained(cache_folder(gguf_path))
    expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert torch_lm.tokenizer.render_chat(messages) == expected


def test_models_without_a_template_get_a_plain_one():
    text = BigramLM().tokenizer.render_chat(CONVERSATIONS[1])
    assert text == "System: Be brief.\nUser: Name a colour.\nAssistant:"


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "non-empty list"),
        ([{"role": "robot", "content": "hi"}], r"messages\[0\].role is 'robot'"),
        ([{"role": "user"}], "needs 'role' and 'content'"),
        ([{"role": "user", "content": 3}], "must be a string"),
    ],
)
def test_bad_messages_are_clear_errors(messages, message):
    with pytest.raises(LmlabError, match=message):
        render_chat(None, messages)


def test_chat_passes_the_whole_history(llama_lm):
    history = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    reply = lmlab.chat(llama_lm, history, temperature=0, max_tokens=30)
    assert "Ada" in reply.text
