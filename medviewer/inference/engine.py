"""Runs a model on images: device, batching, channels_last, autocast; outputs at native size."""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from medviewer.imaging.display import Image
from medviewer.inference.device import autocast_dtype, pick_device
from medviewer.inference.errors import InferenceError
from medviewer.inference.preprocess import normalise, resize_to, tiles, to_channels
from medviewer.models.registry import MedModel
from medviewer.models.spec import ModelSpec


@dataclass
class RawOutput:
    """What the network said about one image, at the image's native size."""

    probs: np.ndarray | None  # (C, H, W) class probabilities, C = number of classes
    label_probs: dict[str, float]


def probabilities(out: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, np.ndarray]:
    """Network output -> probabilities: {"mask": (N, classes, H, W), "labels": (N, L)}.

    The one conversion inference and training's validation share. A binary segmenter has one
    logit channel, returned as [background, foreground].
    """
    result = {}
    if "mask" in out:
        logits = out["mask"].float()
        if logits.shape[1] == 1:
            fg = torch.sigmoid(logits)
            result["mask"] = torch.cat([1 - fg, fg], dim=1).cpu().numpy()
        else:
            result["mask"] = torch.softmax(logits, dim=1).cpu().numpy()
    if "labels" in out:
        logits = out["labels"].float()
        multilabel = spec.label_mode == "multilabel"
        probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)
        result["labels"] = probs.cpu().numpy()
    return result


class Engine:
    """Owns one model on one device. Not thread-safe: one worker thread drives it."""

    def __init__(
        self,
        model: MedModel,
        spec: ModelSpec,
        device: str | torch.device = "auto",
        batch_size: int = 4,
        precision: str = "auto",
    ) -> None:
        self.spec = spec
        self.device = pick_device(device)
        self.amp = autocast_dtype(self.device, precision)
        self.batch_size = max(1, batch_size)
        if self.device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """(N, C, H, W) normalised input -> {"mask": (N, classes, H, W) probs, "labels": (N, L)}."""
        x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.model(x)
        return probabilities(out, self.spec)

    def run(self, images: list[Image]) -> list[RawOutput]:
        """Outputs for each image at its native size; batches of `batch_size`, with a retry at
        half the batch when a GPU runs out of memory."""
        if not images:
            return []
        prepared = [to_channels(im, self.spec) for im in images]
        if self.spec.large_image == "tile":
            return [self._run_tiled(x) for x in prepared]
        inputs = [normalise(resize_to(x, self.spec.input_size), self.spec) for x in prepared]
        outs = self._batched(np.stack(inputs))
        return [self._to_native(outs, k, x.shape[:2]) for k, x in enumerate(prepared)]

    def _batched(self, x: np.ndarray) -> dict[str, np.ndarray]:
        size = self.batch_size
        while True:
            try:
                parts = [self.forward(x[i : i + size]) for i in range(0, len(x), size)]
                return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            except torch.OutOfMemoryError as e:
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if size == 1:
                    raise InferenceError(
                        f"out of memory on {self.device} even with one image at a time"
                    ) from e
                size = max(1, size // 2)

    def _to_native(self, outs: dict[str, np.ndarray], k: int, shape: tuple[int, int]) -> RawOutput:
        probs = None
        if "mask" in outs:
            h, w = shape
            # cv2.resize takes (H, W, C); probabilities interpolate linearly and stay normalised.
            hwc = outs["mask"][k].transpose(1, 2, 0)
            native = cv2.resize(hwc, (w, h), interpolation=cv2.INTER_LINEAR)
            probs = (native if native.ndim == 3 else native[..., None]).transpose(2, 0, 1)
        return RawOutput(probs, self._labels(outs["labels"][k]) if "labels" in outs else {})

    def _labels(self, probs: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.spec.labels, probs, strict=True)}

    def _run_tiled(self, x: np.ndarray) -> RawOutput:
        """Sliding window at native resolution; overlapping tiles are averaged with weights that
        fall off towards tile edges, where the network sees least context."""
        th, tw = self.spec.input_size
        h, w = x.shape[:2]
        pad_h, pad_w = max(0, th - h), max(0, tw - w)
        if pad_h or pad_w:
            x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        H, W = x.shape[:2]
        corners = tiles(H, W, (th, tw), self.spec.tile_overlap)
        batch = np.stack([normalise(x[y : y + th, c : c + tw], self.spec) for y, c in corners])
        outs = self._batched(batch)
        weight = np.outer(np.hanning(th + 2)[1:-1], np.hanning(tw + 2)[1:-1]).astype(np.float32)
        probs = None
        if "mask" in outs:
            acc = np.zeros((outs["mask"].shape[1], H, W), np.float32)
            norm = np.zeros((H, W), np.float32)
            for k, (y, c) in enumerate(corners):
                acc[:, y : y + th, c : c + tw] += outs["mask"][k] * weight
                norm[y : y + th, c : c + tw] += weight
            probs = (acc / np.maximum(norm, 1e-6))[:, :h, :w]
        # A finding anywhere is a finding: label probabilities are the maximum over tiles.
        labels = self._labels(outs["labels"].max(axis=0)) if "labels" in outs else {}
        return RawOutput(probs, labels)
