"""Contrastive text encoders: unsupervised SimCSE, supervised tuning on pairs (in-batch
negatives or CoSENT on scored pairs), and STS evaluation (Spearman, alignment, uniformity)."""
