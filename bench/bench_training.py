"""Training throughput: our epoch loop (`medviewer.training.trainer.fit`) against a plain
segmentation_models_pytorch loop, images per second on the CPU, or on a GPU with
`run(device="cuda")` (`bench/run.py --device cuda training`).

Both train the same Unet/resnet18 (3 classes, same initial weights) on the same images, already
in memory, with the same batch size and the same loss family: Dice + class-weighted
cross-entropy (ours: medviewer.training.losses; the baseline: smp.losses.DiceLoss +
nn.CrossEntropyLoss with the same weights). The baseline is what a script would do:
`torch.randperm`, index the tensors, forward, loss, `AdamW.step()` with torch's defaults.
Ours runs without augmentation (it is a data choice, not a loop cost) and with an empty
validation set, so an epoch is the training loop alone; a second row times augmentation alone.

On a shared machine the load changes from second to second, so the two alternate batch by
batch: each progress event of ours runs one baseline batch, timed on its own and taken out of
our epoch's time. Our loop sends progress at most every 0.25 s, so at the end of each of our
epochs the baseline runs on until it has seen as many images as ours in that epoch (outside our
epoch's time). The first epoch of each is warm-up and not counted.

On a GPU both sides keep the images in host memory and copy each batch to the device, as a
script with a DataLoader does; the baseline runs in fp32 (torch's defaults), ours in whatever
precision the trainer picks there (bf16 autocast where the GPU has it). The images are larger
(256x256) and the batches 16, as a GPU would be used; the time of a step includes waiting for
the device (`loss.item()` on both sides, and a synchronise around the baseline's step).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import torch
from harness import Row, best_of
from torch import nn

from medviewer.inference.device import describe, pick_device
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.training.data import Prepared, TrainingSet
from medviewer.training.losses import class_weights
from medviewer.training.metrics import training_autocast
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

    def __init__(
        self, model: nn.Module, data: Prepared, s: ModelSpec, device: torch.device, batch: int
    ) -> None:
        self.device, self.batch = device, batch
        self.model = model.to(device).train()
        mean, std = np.float32(s.mean[0]), np.float32(s.std[0])
        self.x = torch.from_numpy(((data.images - mean) / std).transpose(0, 3, 1, 2).copy())
        self.y = torch.from_numpy(data.masks.astype(np.int64))
        w = class_weights(data.masks, s.num_classes)
        self.ce = nn.CrossEntropyLoss(weight=w).to(device)
        self.dice = smp.losses.DiceLoss("multiclass")
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.order, self.pos = torch.randperm(len(self.x)), 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> tuple[int, float]:
        """One batch: (images, seconds)."""
        if self.pos >= len(self.order):
            self.order, self.pos = torch.randperm(len(self.x)), 0
        idx = self.order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        self._sync()
        start = time.perf_counter()
        x, y = self.x[idx].to(self.device), self.y[idx].to(self.device)
        logits = self.model(x)["mask"]
        loss = self.ce(logits, y) + self.dice(logits, y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        loss.item()  # a loop logs its loss too
        self._sync()
        return len(idx), time.perf_counter() - start


def _event(event: Any) -> dict[str, Any]:
    """A progress event as a dict (the trainer sends protocol Event objects)."""
    return event if isinstance(event, dict) else event.to_dict()


def run(quick: bool = False, device: str = "cpu") -> list[Row]:
    where = pick_device(device)
    gpu = where.type == "cuda"
    if gpu:
        n, size, epochs, batch = (64, 128, 3, 16) if quick else (256, 256, 4, 16)
    else:
        n, size, epochs, batch = (16, 64, 3, BATCH) if quick else (48, 128, 4, BATCH)
    s = spec(size)
    data, empty = images(n, size, s), images(0, size, s)
    torch.manual_seed(0)
    model = build_model(s)
    plain = PlainLoop(copy.deepcopy(model), data, s, where, batch)
    # [images, seconds] of each side; `inside` is baseline time spent inside our epoch,
    # `seen` the baseline's images in this epoch.
    ours, base, inside, seen = [0, 0.0], [0, 0.0], [0.0], [0]

    def baseline_step(epoch: int) -> float:
        images_, seconds = plain.step()
        seen[0] += images_
        if epoch > 1:  # the first epoch of both is warm-up
            base[0] += images_
            base[1] += seconds
        return seconds

    def interleave(event: Any) -> None:
        e = _event(event)
        if e["event"] == "batch":
            inside[0] += baseline_step(e["epoch"])
        elif e["event"] == "epoch":
            if e["epoch"] > 1:
                ours[0] += n
                ours[1] += e["seconds"] - inside[0]
            while seen[0] < n:  # as many images as ours, outside our epoch's time
                baseline_step(e["epoch"])
            inside[0], seen[0] = 0.0, 0

    cfg = TrainConfig(
        epochs=epochs + 1, batch_size=batch, device=str(where), augment=False, patience=0
    )
    fit(copy.deepcopy(model), s, data, empty, cfg, emit=interleave)
    # Seconds for one epoch of n images, each side.
    ours_s, base_s = ours[1] / ours[0] * n, base[1] / base[0] * n
    machine = describe(where) if gpu else f"CPU, {torch.get_num_threads()} threads"
    amp = training_autocast(where)
    precision = "fp32" if amp is None else f"{str(amp).removeprefix('torch.')} autocast"
    augmenting = TrainingSet(data, augment=True)
    aug_s = best_of(
        lambda: [augmenting.batch(range(i, min(i + batch, n))) for i in range(0, n, batch)], 3
    )
    return [
        Row(
            NAME,
            f"Unet/resnet18 {size}x{size}, one epoch of {n} images, batch {batch}"
            + (" (GPU)" if gpu else ""),
            ours_s,
            "plain smp loop",
            base_s,
            f">= {TARGET:.1f}x",
            base_s / ours_s >= TARGET,
            note=f"images/s: ours {n / ours_s:.2f}, plain loop {n / base_s:.2f} over "
            f"{epochs} epochs after a warm-up one ({machine}; ours {precision})",
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
