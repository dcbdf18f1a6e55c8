"""Text classification: one TextClassifier over many methods (probes, fine-tuning, prompting)."""
