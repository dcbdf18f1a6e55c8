"""The training objectives: causal LM (our models, and a pretrained LM through LoRA adapters),
masked LM with next-sentence prediction, and sequence classification."""
