"""Training throughput: our epoch loop (`medviewer.training.trainer.fit`) against a plain
segmentation_models_pytorch loop, images per second on the CPU.

Both train the same Unet/resnet18 (3 classes, same initial weights) on the same images, already
in memory, with the same batch size and the same loss family: Dice + class-weighted
cross-entropy (ours: medviewer.training.losses; the baseline: smp.losses.DiceLoss +
nn.CrossEntropyLoss with the same weights). The baseline is what a script would do:
`torch.randperm`, index the tensors, forward, loss, `AdamW.step()` with torch's defaults.
Ours runs without augmentation (it is a data choice, not a loop cost) and with an empty
validation set, so an epoch is the training loop alone; a second row times augmentation alone.

On a shared machine the load changes from second to second, so the two alternate batch by
batch: each progress event of ours runs one baseline batch, timed on its own and taken out of
our epoch's time. The first epoch of each is warm-up and not counted.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import segmentation_models_pytorch as smp
import torch
from harness import Row, best_of
from torch import nn

from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.training.data import Prepared, TrainingSet
from medviewer.training.losses import class_weights
from medviewer.training.trainer import TrainConfig, fit

NAME = "training"
TARGET = 1.0  # ours at least as fast as the plain loop
BATCH = 8


def spec(size: int) -> ModelSpec:
    return ModelSpec.from_dict(
        {
            "name": "bench",
            "task": "segmentation",
            "architecture": "Unet",
            "encoder": "resnet18",
            "classes": ["background", "organ", "lesion"],
            "input": {"size": [size, size]},
        }
    )


def images(n: int, size: int, s: ModelSpec) -> Prepared:
    rng = np.random.default_rng(0)
    x = rng.random((n, size, size, 1)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, size // 4 : size // 2, size // 4 : size // 2] = 1
    masks[:, 3 * size // 4 : 3 * size // 4 + size // 16, 10 : 10 + size // 16] = 2
    none = np.zeros((n, 0), np.float32)
    return Prepared(s, x, masks, np.ones(n, bool), none, none, np.zeros(n, bool), list(range(n)))


class PlainLoop:
    """The loop everyone writes first, one batch at a time."""

    def __init__(self, model: nn.Module, data: Prepared, s: ModelSpec) -> None:
        self.model = model.train()
        mean, std = np.float32(s.mean[0]), np.float32(s.std[0])
        self.x = torch.from_numpy(((data.images - mean) / std).transpose(0, 3, 1, 2).copy())
        self.y = torch.from_numpy(data.masks.astype(np.int64))
        w = class_weights(data.masks, s.num_classes)
        self.ce = nn.CrossEntropyLoss(weight=w)
        self.dice = smp.losses.DiceLoss("multiclass")
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.order, self.pos = torch.randperm(len(self.x)), 0

    def step(self) -> tuple[int, float]:
        """One batch: (images, seconds)."""
        if self.pos >= len(self.order):
            self.order, self.pos = torch.randperm(len(self.x)), 0
        idx = self.order[self.pos : self.pos + BATCH]
        self.pos += BATCH
        start = time.perf_counter()
        logits = self.model(self.x[idx])["mask"]
        loss = self.ce(logits, self.y[idx]) + self.dice(logits, self.y[idx])
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        loss.item()  # a loop logs its loss too
        return len(idx), time.perf_counter() - start


def run(quick: bool = False) -> list[Row]:
    n, size, epochs = (16, 64, 3) if quick else (48, 128, 4)
    s = spec(size)
    data, empty = images(n, size, s), images(0, size, s)
    torch.manual_seed(0)
    model = build_model(s)
    plain = PlainLoop(copy.deepcopy(model), data, s)
    # [images, seconds] of each side; `inside` is baseline time spent inside our epoch.
    ours, base, inside = [0, 0.0], [0, 0.0], [0.0]

    def interleave(event: dict) -> None:
        if event["event"] == "batch":
            images_, seconds = plain.step()
            inside[0] += seconds
            if event["epoch"] > 1:  # the first epoch of both is warm-up
                base[0] += images_
                base[1] += seconds
        elif event["event"] == "epoch":
            if event["epoch"] > 1:
                ours[0] += n
                ours[1] += event["seconds"] - inside[0]
            inside[0] = 0.0

    cfg = TrainConfig(epochs=epochs + 1, batch_size=BATCH, device="cpu", augment=False, patience=0)
    fit(copy.deepcopy(model), s, data, empty, cfg, emit=interleave)
    # Seconds for one epoch of n images, each side.
    ours_s, base_s = ours[1] / ours[0] * n, base[1] / base[0] * n
    augmenting = TrainingSet(data, augment=True)
    aug_s = best_of(
        lambda: [augmenting.batch(range(i, min(i + BATCH, n))) for i in range(0, n, BATCH)], 3
    )
    return [
        Row(
            NAME,
            f"Unet/resnet18 {size}x{size}, one epoch of {n} images, batch {BATCH}",
            ours_s,
            "plain smp loop",
            base_s,
            f">= {TARGET:.1f}x",
            base_s / ours_s >= TARGET,
            note=f"images/s: ours {n / ours_s:.2f}, plain loop {n / base_s:.2f} over "
            f"{epochs} epochs after a warm-up one (CPU, {torch.get_num_threads()} threads)",
        ),
        Row(
            NAME,
            f"augmenting one epoch's batches ({n} images, flips + affine + gain/bias)",
            aug_s,
            note=f"augmentation: {1000 * aug_s / n:.2f} ms per image, "
            f"{100 * aug_s / ours_s:.1f}% of an epoch",
        ),
    ]


if __name__ == "__main__":
    from run import table

    print(table(run(quick=True)))
