"""CLIP-style alignment (Radford et al. 2021): an image tower and a text encoder projected into
one space, trained by the symmetric InfoNCE loss with a learned temperature.

  loss.py      the symmetric InfoNCE loss (with same-label positives for captions from labels)
  captions.py  captions from labels by templates ("a photo of a {label}") and synonyms
  model.py     ClipConfig, ClipModel: the towers, the projections, the temperature
  encoder.py   ClipEncoder: a run as an encoder of texts and images (embed, index, classify, map)

Training is lmlab.training.clip.train_clip: the one loop over the objective in
lmlab/training/objectives/clip.py.
"""
