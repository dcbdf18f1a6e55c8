"""A tiny chat model for post-training tests: the bundled chat model's tokenizer and chat
template (ChatML) on a one-layer Llama of width 16, so that training steps take milliseconds."""

import shutil

import torch

from lmlab.models import BUNDLED, DEFAULT_LM, bundled_path

no_chat_model = bundled_path(BUNDLED[DEFAULT_LM]) is None


def chat_folder():
    from lmlab.lm.lora_lm import _base_folder

    return _base_folder(DEFAULT_LM)


def tiny_chat_lm(folder):
    from transformers import LlamaConfig, LlamaForCausalLM

    source = chat_folder()
    folder.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "generation_config.json"):  # fmt: skip
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)
    config = LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder
