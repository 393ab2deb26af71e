"""Post-processing where the network's output already is: on the GPU, or on the CPU.

Plain torch ops, so the same code runs on every device. From class probabilities at the
network's input size it makes what a proposal needs at the image's native size: the uint8 label
map (threshold or argmax), the uncertainty score (mean normalised pixel entropy, the same as
`postprocess.pixel_entropy`) and the class pixel counts. On a GPU only those (a byte per pixel
and a few numbers per image) travel back to the host, through pinned memory; the float maps
stay on the device unless a caller asks for them (`keep_probs`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.models.spec import ModelSpec

# Elements (pixels x classes) post-processed at once on a device: bounds the temporaries of the
# entropy (a few float32 copies) whatever the images' native size.
CHUNK_ELEMENTS = 1 << 26  # 64 Mi elements, 256 MB per float32 temporary


def probability_tensors(out: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Network output (logits) -> float32 probabilities on the same device:
    {"mask": (N, classes, H, W), "labels": (N, L)}. A binary segmenter has one logit channel,
    returned as [background, foreground]."""
    result = {}
    if "mask" in out:
        logits = out["mask"].float()
        if logits.shape[1] == 1:
            fg = torch.sigmoid(logits)
            result["mask"] = torch.cat([1 - fg, fg], dim=1)
        else:
            result["mask"] = torch.softmax(logits, dim=1)
    if "labels" in out:
        logits = out["labels"].float()
        multilabel = spec.label_mode == "multilabel"
        result["labels"] = torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)
    return result


def to_size(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W), bilinear with half-pixel centres (cv2's INTER_LINEAR):
    probabilities interpolate linearly and stay normalised."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)


def label_maps(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N, C, H, W) probabilities -> (N, H, W) uint8 class indices (`postprocess.label_map`)."""
    if probs.shape[1] == 2:
        return (probs[:, 1] >= threshold).to(torch.uint8)
    return probs.argmax(dim=1).to(torch.uint8)


def pixel_entropies(probs: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N,) float64: mean per-pixel entropy over log(C), as
    `postprocess.pixel_entropy`."""
    p = probs.clamp(1e-7, 1.0)
    h = -(p * p.log()).sum(dim=1)
    n = h.shape[-2] * h.shape[-1]
    return h.sum(dim=(-2, -1), dtype=torch.float64) / (n * math.log(probs.shape[1]))


def class_pixels(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """(N, H, W) uint8 label maps -> (N, classes) int64 pixel counts of each class.

    Comparisons rather than bincount: bincount on a GPU reads the maximum back to the host,
    which would stall the pipeline."""
    values = torch.arange(classes, device=labels.device, dtype=labels.dtype)
    return (labels[:, None] == values.view(1, classes, 1, 1)).sum(dim=(2, 3))


@dataclass
class Decided:
    """One image's outputs on the host."""

    labels: np.ndarray | None  # uint8 (H, W) label map at native size, before postprocess
    uncertainty: float | None  # mean normalised pixel entropy (None for classifiers)
    class_pixels: np.ndarray | None  # (classes,) int64 pixels of each class in `labels`
    label_probs: np.ndarray | None  # (L,) float32
    probs: np.ndarray | None = None  # (C, H, W) float32, only when kept


@dataclass
class Pending:
    """A batch's results on their way to the host; `finish()` waits for the copies."""

    count: int
    event: torch.cuda.Event | None = None
    groups: list[tuple[list[int], torch.Tensor, torch.Tensor | None]] = field(default_factory=list)
    summary: torch.Tensor | None = None  # (N, 1 + classes) float64: entropy, pixel counts
    label_probs: torch.Tensor | None = None  # (N, L) float32

    def finish(self) -> list[Decided]:
        if self.event is not None:
            self.event.synchronize()
        labels: list[np.ndarray | None] = [None] * self.count
        probs: list[np.ndarray | None] = [None] * self.count
        for idx, maps, kept in self.groups:
            host = maps.numpy()
            for j, i in enumerate(idx):
                labels[i] = host[j].copy()  # out of the (pinned) batch buffer, which is reused
                if kept is not None:
                    probs[i] = kept[j].numpy().copy()
        summary = self.summary.numpy() if self.summary is not None else None
        lp = self.label_probs.numpy() if self.label_probs is not None else None
        return [
            Decided(
                labels[i],
                float(summary[i, 0]) if summary is not None else None,
                summary[i, 1:].astype(np.int64) if summary is not None else None,
                lp[i].copy() if lp is not None else None,
                probs[i],
            )
            for i in range(self.count)
        ]


def _to_host(t: torch.Tensor, pinned: bool) -> torch.Tensor:
    """An asynchronous copy into pinned host memory on a GPU; the tensor itself on the CPU."""
    if t.device.type == "cpu":
        return t
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=pinned)
    host.copy_(t, non_blocking=pinned)
    return host


def _rows(idx: list[int], device: torch.device) -> slice | torch.Tensor:
    """Index of a batch's rows: a slice when they are consecutive (the usual case); else a
    tensor that reaches a GPU without a synchronising copy."""
    if idx == list(range(idx[0], idx[-1] + 1)):
        return slice(idx[0], idx[-1] + 1)
    rows = torch.tensor(idx)
    if device.type == "cuda":
        return rows.pin_memory().to(device, non_blocking=True)
    return rows.to(device)


def decide(
    probs: dict[str, torch.Tensor],
    sizes: list[tuple[int, int]],
    spec: ModelSpec,
    keep_probs: bool = False,
) -> Pending:
    """Probabilities of a batch (on any device) -> label maps at each image's native `sizes`,
    uncertainty and class counts, copied to the host asynchronously (see `Pending`).

    Images of the same native size are resized together, in chunks of at most
    `CHUNK_ELEMENTS`, so a batch of large radiographs does not need a batch of float maps at
    native size at once."""
    n = len(sizes)
    some = next(iter(probs.values()))
    cuda = some.device.type == "cuda"
    pending = Pending(n)
    if "labels" in probs:
        pending.label_probs = _to_host(probs["labels"].float(), cuda)
    if "mask" in probs:
        mask = probs["mask"]
        classes = mask.shape[1]
        summary = torch.empty((n, 1 + classes), dtype=torch.float64, device=mask.device)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, s in enumerate(sizes):
            by_size[(int(s[0]), int(s[1]))].append(i)
        for size, members in by_size.items():
            step = max(1, CHUNK_ELEMENTS // (classes * size[0] * size[1]))
            for s in range(0, len(members), step):
                idx = members[s : s + step]
                rows = _rows(idx, mask.device)
                native = to_size(mask[rows], size)
                maps = label_maps(native, spec.mask_threshold)
                summary[rows, 0] = pixel_entropies(native)
                summary[rows, 1:] = class_pixels(maps, classes).double()
                kept = _to_host(native, cuda).contiguous() if keep_probs else None
                pending.groups.append((idx, _to_host(maps, cuda), kept))
        pending.summary = _to_host(summary, cuda)
    if cuda:
        pending.event = torch.cuda.Event()
        pending.event.record()
    return pending
