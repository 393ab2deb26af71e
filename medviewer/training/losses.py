"""Losses for rare findings: Dice + class-weighted cross-entropy (or focal) for masks, BCE with
per-label positive weights for labels; a segmentation+classification model sums both.

A lesion is often under 1% of the pixels. Plain cross-entropy then reaches a low loss by calling
everything background; Dice is computed per class, so a missed small class costs as much as a
missed large one, and the class weights keep the pixel loss from drowning it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medviewer.models.spec import ModelSpec
from medviewer.training.protocol import LOSSES


def class_weights(
    masks: Iterable[np.ndarray], num_classes: int, power: float = 0.5
) -> torch.Tensor:
    """Per-class weights from pixel frequencies: frequency ** -power (inverse square root by
    default; 1 would be plain inverse frequency, which over-corrects and makes training noisy),
    scaled so the pixel-weighted mean weight is 1. Background is included; classes absent from
    the masks get the largest weight seen (they never occur as a target, so it rarely matters).
    """
    counts = np.zeros(num_classes, np.float64)
    for m in masks:
        counts += np.bincount(np.asarray(m).ravel(), minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        return torch.ones(num_classes)
    freq = counts / counts.sum()
    w = np.zeros(num_classes)
    present = freq > 0
    w[present] = freq[present] ** -power
    w[~present] = w[present].max()
    w /= (w * freq).sum()
    return torch.tensor(w, dtype=torch.float32)


def label_pos_weights(labels: np.ndarray, known: np.ndarray, cap: float = 50.0) -> torch.Tensor:
    """BCE pos_weight per label: negatives / positives among images where the label is known."""
    pos = (labels * known).sum(0)
    neg = ((1 - labels) * known).sum(0)
    w = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return torch.tensor(np.clip(w, 1.0 / cap, cap), dtype=torch.float32)


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """1 - Dice per class over the whole batch, averaged over classes present in the target
    (a class absent from the batch has no Dice to learn from; its false positives are left to
    the pixel loss)."""
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    card = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (card + 1e-5)
    present = onehot.sum(dims) > 0
    if not present.any():
        return probs.sum() * 0.0
    return (1 - dice)[present].mean()


class SegmentationLoss(nn.Module):
    """logits (N, C, H, W), or (N, 1, H, W) for two classes; target (N, H, W) class ids."""

    def __init__(
        self,
        kind: str = "dice+ce",
        weights: torch.Tensor | None = None,
        gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; valid: {', '.join(LOSSES)}")
        self.kind = kind
        self.gamma = gamma
        self.register_buffer("weights", weights if weights is not None else torch.empty(0))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if logits.shape[1] == 1:
            # MedModel has one logit for binary masks: log p(fg) and log p(bg) from it.
            z = logits[:, 0]
            log_p = torch.stack([F.logsigmoid(-z), F.logsigmoid(z)], dim=1)
        else:
            log_p = F.log_softmax(logits, dim=1)
        nll = -log_p.gather(1, target[:, None]).squeeze(1)  # (N, H, W)
        if self.kind == "dice+focal":
            nll = (1 - torch.exp(-nll)) ** self.gamma * nll
        if self.weights.numel():
            w = self.weights[target]
            pixel = (w * nll).sum() / w.sum().clamp_min(1e-6)  # weighted mean, as F.cross_entropy
        else:
            pixel = nll.mean()
        if self.kind == "ce":
            return pixel
        onehot = F.one_hot(target, log_p.shape[1]).permute(0, 3, 1, 2).float()
        return pixel + soft_dice_loss(log_p.exp(), onehot)


class LabelLoss(nn.Module):
    """Multi-label: BCE with pos_weight, counting only labels whose truth is known. Multi-class:
    cross-entropy on the ticked label (images with none ticked do not count)."""

    def __init__(self, multilabel: bool = True, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.multilabel = multilabel
        self.register_buffer("pos_weight", pos_weight if pos_weight is not None else None)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        logits = logits.float()
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(
                logits, target, pos_weight=self.pos_weight, reduction="none"
            )
            return (loss * known).sum() / known.sum().clamp_min(1.0)
        rows = (target * known).sum(1) > 0
        if not rows.any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits[rows], target[rows].argmax(1))


class Criterion(nn.Module):
    """The training loss of a MedModel's output dict: mask loss + label loss, each over the
    images that have that kind of truth."""

    def __init__(self, seg: SegmentationLoss | None, labels: LabelLoss | None) -> None:
        super().__init__()
        self.seg = seg
        self.labels = labels

    def forward(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Zero times every output keeps every parameter in the graph: DDP expects a gradient
        # for each one, even in a batch without masks.
        total = sum(o.float().sum() * 0.0 for o in out.values())
        if self.seg is not None and "mask" in out:
            rows = batch["has_mask"]
            if rows.all():  # the usual case: no copy of the logits
                total = total + self.seg(out["mask"], batch["mask"])
            elif rows.any():
                total = total + self.seg(out["mask"][rows], batch["mask"][rows])
        if self.labels is not None and "labels" in out:
            total = total + self.labels(out["labels"], batch["labels"], batch["label_known"])
        return total


def build_criterion(
    spec: ModelSpec,
    kind: str = "dice+ce",
    masks: np.ndarray | None = None,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    weighted: bool = True,
) -> Criterion:
    """The loss for a spec, weighted from the training targets (masks; labels and known)."""
    seg = lab = None
    if spec.segments:
        w = class_weights(masks, spec.num_classes) if weighted and masks is not None else None
        seg = SegmentationLoss(kind, w)
    if spec.classifies:
        multilabel = spec.label_mode == "multilabel"
        pw = label_pos_weights(*labels) if weighted and labels is not None and multilabel else None
        lab = LabelLoss(multilabel, pw)
    return Criterion(seg, lab)
