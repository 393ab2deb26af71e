"""Network input for the engine, batch by batch: the CPU prepares batch k+1 while the device
runs batch k.

Preparing an image (display window, resize, normalise) is host work of a few milliseconds; a
GPU runs a 512x512 Unet in under one. So on a GPU the images of the next batches are prepared
on a small thread pool (OpenCV and numpy release the GIL), straight into pinned memory, whose
copy to the device is asynchronous. On the CPU the network already uses every core: batches are
prepared inline, in order.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from medviewer.imaging.display import Image
from medviewer.inference.preprocess import normalise, resize_to, to_channels
from medviewer.models.spec import ModelSpec

AHEAD = 2  # batches prepared ahead of the one the device runs
MAX_WORKERS = 8


def prep_workers() -> int:
    """Threads that prepare images for a GPU: the cores the process may use, up to 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores - 1))


@dataclass
class InputBatch:
    start: int  # index of the batch's first image in the run
    sizes: list[tuple[int, int]]  # native (rows, columns) of each image
    x: torch.Tensor  # (n, C, H, W) float32 normalised input on the host, pinned for a GPU


def _fill(out: np.ndarray, image: Image, spec: ModelSpec) -> tuple[int, int]:
    x = to_channels(image, spec)
    out[: spec.in_channels] = normalise(resize_to(x, spec.input_size), spec)
    out[spec.in_channels :] = 0  # a guided model without clicks: empty guidance
    return x.shape[0], x.shape[1]


class BatchFeed:
    """Iterate over the batches of `images`; errors (a NaN image, a wrong channel count) are
    raised in image order, when the batch holding the image is reached."""

    def __init__(
        self,
        images: list[Image],
        spec: ModelSpec,
        batch_size: int,
        *,
        pinned: bool = False,
        workers: int = 0,
    ) -> None:
        self.images = images
        self.spec = spec
        self.batch_size = max(1, batch_size)
        self.pinned = pinned
        self.workers = workers

    def _buffer(self, n: int) -> torch.Tensor:
        h, w = self.spec.input_size
        return torch.empty((n, self.spec.network_channels, h, w), pin_memory=self.pinned)

    def __iter__(self) -> Iterator[InputBatch]:
        starts = range(0, len(self.images), self.batch_size)
        if self.workers <= 0:
            for s in starts:
                part = self.images[s : s + self.batch_size]
                x = self._buffer(len(part))
                out = x.numpy()
                yield InputBatch(s, [_fill(out[k], im, self.spec) for k, im in enumerate(part)], x)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="inference-prep")
        queued: deque[tuple[int, torch.Tensor, list[Future]]] = deque()

        def submit(s: int) -> None:
            part = self.images[s : s + self.batch_size]
            x = self._buffer(len(part))
            out = x.numpy()
            futures = [pool.submit(_fill, out[k], im, self.spec) for k, im in enumerate(part)]
            queued.append((s, x, futures))

        todo = iter(starts)
        try:
            for s in todo:
                submit(s)
                if len(queued) > AHEAD:
                    break
            while queued:
                s, x, futures = queued.popleft()
                sizes = [f.result() for f in futures]
                nxt = next(todo, None)
                if nxt is not None:
                    submit(nxt)
                yield InputBatch(s, sizes, x)
        finally:
            for _, _, futures in queued:
                for f in futures:
                    f.cancel()
            pool.shutdown(wait=True)
