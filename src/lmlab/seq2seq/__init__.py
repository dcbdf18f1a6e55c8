"""Conditional language models P(target | source): sequence-to-sequence data and runs.

  data.py   source-target pairs from a CSV, TSV, JSONL or Parquet table
  model.py  a trained run (`load_seq2seq`), and `condition(source)`: a LanguageModel of the
            targets, so decoding is the LMs' own (greedy `translate`)

Training is `lmlab.training.seq2seq.train_seq2seq` (the one loop, objectives/seq2seq.py); the
model is `lmlab.lm.neural.transformer`.
"""
