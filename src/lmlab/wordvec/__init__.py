"""Word vectors trained here: word2vec (skip-gram or CBOW with negative sampling), the run's
vectors as a static word encoder, and the standard analogy and word-similarity evaluations."""
