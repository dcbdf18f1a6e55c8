"""Conditional language models P(target | source): sequence-to-sequence data and runs.

  data.py           source-target pairs from a CSV, TSV, JSONL or Parquet table
  model.py          a trained run (`load_seq2seq`): `translate`, `score`, and
                    `condition(source)`, a LanguageModel of the targets
  decoding.py       batched greedy decoding and sampling, sources of similar length together
  beam.py           batched beam search with GNMT's length penalty
  search_options.py the beam width, length penalty and length bound (no torch: the CLI checks)
  files.py          a text file translated line by line into another, atomically
  evaluate.py       BLEU, chrF, BLEU by source length, the references' perplexity
  attention_map.py  the cross-attention of a translation, word by word, and its picture

Training is `lmlab.training.seq2seq.train_seq2seq` (the one loop, objectives/seq2seq.py); the
model is `lmlab.lm.neural.transformer`. Decoding uses only the encoder-decoder interface
(encode, new_cache -> cache with length and reorder, decode, cross_attention).
"""
