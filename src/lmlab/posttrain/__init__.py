"""Post-training: instruction tuning (SFT), reward models and preference tuning (DPO) of a
pretrained causal LM, and the making of preference data; all on the one training loop."""
