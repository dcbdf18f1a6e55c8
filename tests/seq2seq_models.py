"""A tiny randomly initialised T5 with a word-level tokenizer built here: a Hugging Face
encoder-decoder folder for tests, nothing downloaded."""

import torch

WORDS = ["the", "a", "cat", "dog", "sees", "likes", "small", "big", "red", "old", "house",
         "tree", "el", "la", "gato", "perro", "ve"]  # fmt: skip


def save_tiny_t5(folder):
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    raw = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])  # fmt: skip
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)  # fmt: skip
    config = T5Config(vocab_size=len(vocab), d_model=16, d_ff=32, d_kv=8, num_layers=1,
                      num_decoder_layers=1, num_heads=2, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder
