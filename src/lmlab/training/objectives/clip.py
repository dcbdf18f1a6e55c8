"""CLIP-style alignment: the symmetric InfoNCE loss of images and their captions (clip/loss.py).

The data: uint8 images (N, C, S, S), each with a caption group (its class, for captions made
from labels; else its own caption) and for each group the positions of its captions in a bank
of texts. Each epoch the images are shuffled and cut into batches; each image of a batch draws
one of its group's captions (a new draw every time it is seen). With a frozen text encoder the
bank is a tensor of its vectors, computed once; else token ids that the text tower reads.

Validation: the loss on held-out images (their first caption each, in fixed batches) and, when
captions come from labels, zero-shot accuracy: each held-out image is given the class whose
captions' mean vector is nearest (a prompt ensemble, Radford et al. 2021).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lmlab.clip.model import pad_ids
from lmlab.images.files import to_batch
from lmlab.training.objective import NoLogMetrics


class CaptionBank:
    """The texts images are paired with: vectors (frozen encoder) or token ids (training one)."""

    def __init__(self, vectors: torch.Tensor | None = None, ids: list[list[int]] | None = None):
        self.vectors, self.ids = vectors, ids

    def __len__(self) -> int:
        return len(self.vectors) if self.vectors is not None else len(self.ids)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(vectors,) or (ids, mask) of the captions at `rows`."""
        if self.vectors is not None:
            return (self.vectors[rows],)
        return pad_ids([self.ids[i] for i in rows.tolist()])


class ImageCaptionBatches:
    """Epoch after epoch, shuffled batches of (pixels, caption rows of the bank, groups), with
    a position that checkpoints can restore.

    Args:
        pixels: uint8 (N, C, S, S).
        groups: (N,) long: each image's caption group.
        start, count: (G,) long: group g's captions are bank rows start[g] .. start[g]+count[g]-1.
        batch_size: images per batch (the last of an epoch is dropped when smaller than half).
        seed: of the shuffles and the caption draws.
    """

    def __init__(self, pixels, groups, start, count, batch_size: int, seed: int) -> None:
        self.pixels, self.groups, self.start, self.count = pixels, groups, start, count
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch: tuple[torch.Tensor, ...] = ()
        self.position = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.position >= len(self.epoch):
            order = torch.randperm(len(self.pixels), generator=self.generator).split(
                self.batch_size
            )
            if len(order) > 1 and len(order[-1]) < self.batch_size // 2:
                order = order[:-1]  # too few in-batch negatives to learn from
            self.epoch, self.position = order, 0
        rows = self.epoch[self.position]
        self.position += 1
        g = self.groups[rows]
        draw = torch.rand(len(rows), generator=self.generator)
        captions = self.start[g] + (draw * self.count[g]).long().clamp(max=self.count[g] - 1)
        return self.pixels[rows], captions, g

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "epoch": self.epoch,
                "position": self.position}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch, self.position = state["epoch"], state["position"]


class Clip(NoLogMetrics):
    """Symmetric InfoNCE of image-caption pairs, with a learned temperature.

    Args:
        batches: ImageCaptionBatches of the training images.
        bank: the CaptionBank.
        device: where the model is.
        valid: (pixels, groups) of held-out images, or None.
        batch_size: of validation.
        classes: when captions come from labels, the number of groups (= classes): validation
            adds zero-shot accuracy; None for free captions.
        eval_batches: batches of the quick periodic estimate (the final one reads them all).
    """

    def __init__(self, batches: ImageCaptionBatches, bank: CaptionBank, device: torch.device, *,
                 valid=None, batch_size: int = 256, classes: int | None = None,
                 eval_batches: int = 20) -> None:  # fmt: skip
        self.batches, self.bank, self.device = batches, bank, device
        self.valid, self.batch_size, self.classes = valid, batch_size, classes
        self.eval_batches = eval_batches
        self.validates = valid is not None and len(valid[0]) > 1
        self.units_per_batch = batches.batch_size  # pairs

    def loss(self, net: nn.Module) -> torch.Tensor:
        pixels, captions, groups = self.batches.next()
        text = tuple(t.to(self.device) for t in self.bank.batch(captions))
        return net(to_batch(pixels).to(self.device), text, groups.to(self.device))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, full: bool) -> dict[str, float]:
        was_training = model.training
        model.eval()
        pixels, groups = self.valid
        starts = self.batches.start
        n = len(pixels) if full else min(len(pixels), self.eval_batches * self.batch_size)
        losses, right = [], 0
        anchors = self._class_vectors(model) if self.classes else None
        for i in range(0, n, self.batch_size):
            rows = torch.arange(i, min(n, i + self.batch_size))
            if len(rows) < 2:
                continue
            g = groups[rows]
            image = model.encode_image(to_batch(pixels[rows]).to(self.device))
            text = self._texts(model, starts[g])  # each image's first caption
            scale = model.scale()
            losses.append((model_loss(image, text, scale, g.to(self.device)), len(rows)))
            if anchors is not None:
                right += int(((image @ anchors.T).argmax(1).cpu() == g).sum())
        model.train(was_training)
        count = sum(k for _, k in losses)
        out = {"valid_loss": sum(v * k for v, k in losses) / max(count, 1)}
        if anchors is not None:
            out["valid_zero_shot_accuracy"] = right / max(count, 1)
        out["temperature"] = float(1 / model.scale().exp())
        return out

    def _texts(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """Projected, normalised vectors of bank rows."""
        out = []
        for i in range(0, len(rows), self.batch_size):
            text = tuple(t.to(self.device) for t in self.bank.batch(rows[i : i + self.batch_size]))
            out.append(model.project_text(text[0]) if len(text) == 1
                       else model.encode_text_ids(*text))  # fmt: skip
        return torch.cat(out)

    def _class_vectors(self, model: nn.Module) -> torch.Tensor:
        """(classes, dim): the normalised mean of each class's projected captions."""
        start, count = self.batches.start, self.batches.count
        vectors = self._texts(model, torch.arange(len(self.bank)))
        means = [
            vectors[s : s + c].mean(0) for s, c in zip(start.tolist(), count.tolist(), strict=True)
        ]
        return F.normalize(torch.stack(means), dim=-1)

    def state_dict(self) -> dict:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state["batches"])


def model_loss(image, text, scale, groups) -> float:
    from lmlab.clip.loss import symmetric_info_nce

    return float(symmetric_info_nce(image.float(), text.float(), scale, groups))
