"""Clicks for a click-guided model: what a click is, the region the model looks at, and how
clicks become its guidance channels.

Encoding (decided here; the spec says how many channels, `ModelSpec.guidance_channels`): each
click is a disc of `disc_radius` pixels at the model's input size, value 1, in its class's
positive or negative map (pos_1, neg_1, pos_2, neg_2, ...); with `guidance_prev_mask` the
previous mask's class k follows as one 0..1 map per class. Discs rather than distance maps:
RITM (Sofiiuk et al. 2021) found them as good or better, and a disc reads the same at any
distance from other clicks.

Region (decided here): with clicks the model sees a crop, not the whole image (unless its spec
says `guidance_zoom: false`): the box around
the clicks and the previous mask, widened by `CROP_MARGIN` of its size on each side (RITM's
zoom-in), at least `MIN_CROP_SHARE` of the image's side, with the image's aspect ratio, so an
object is seen at most twice as large as in the whole image the model also learns from. The
crop is resized to the input size through `inference.preprocess`; outside it the previous mask
stays (`paste`). Without clicks the model sees the whole image with empty guidance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medviewer.inference.errors import InferenceError
from medviewer.inference.preprocess import normalise, resize_to, with_guidance
from medviewer.models.spec import ModelSpec

CROP_MARGIN = 0.4  # of the box's side, on each side
MIN_CROP_SHARE = 0.5  # of the image's side: the crop enlarges at most twice


@dataclass(frozen=True)
class Click:
    """One click at image pixel (row, col): inside (`positive`) or outside class `class_value`."""

    row: float
    col: float
    positive: bool
    class_value: int = 1


@dataclass(frozen=True)
class Box:
    """Rows top..bottom and columns left..right of an image (ends exclusive)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left


def disc_radius(spec: ModelSpec) -> int:
    """Click disc radius at the input size: 5 pixels at 256 (RITM's 5 at ~300), at least 3."""
    return max(3, round(min(spec.input_size) / 50))


def check_clicks(clicks: list[Click], shape: tuple[int, int], spec: ModelSpec) -> None:
    """InferenceError naming the click when it lies off the image or names no class."""
    h, w = shape
    for k, c in enumerate(clicks):
        if not (0 <= c.row < h and 0 <= c.col < w):
            raise InferenceError(f"click {k + 1} at ({c.row}, {c.col}) is off the {w}x{h} image")
        if not 1 <= c.class_value < max(2, spec.num_classes):
            raise InferenceError(
                f"click {k + 1}: class {c.class_value} is not a foreground class of {spec.name}"
            )


def crop_box(
    shape: tuple[int, int],
    clicks: list[Click],
    prev_mask: np.ndarray | None = None,
    zoom: bool = True,
) -> Box:
    """The region a guided model sees for these clicks and the previous label map's pixels of
    the clicked classes (module docstring); the whole image without clicks, or without `zoom`
    (the spec's `guidance_zoom`)."""
    h, w = shape
    if not clicks or not zoom:
        return Box(0, 0, h, w)
    rows = [c.row for c in clicks]
    cols = [c.col for c in clicks]
    # The previous mask of the clicked classes: a binary model's 1, a multi-class model's k.
    shown = None if prev_mask is None else np.isin(prev_mask, [c.class_value for c in clicks])
    if shown is not None and shown.any():
        r, c = np.nonzero(shown)
        rows += [float(r.min()), float(r.max())]
        cols += [float(c.min()), float(c.max())]
    r0, r1, c0, c1 = min(rows), max(rows) + 1, min(cols), max(cols) + 1
    share = max((r1 - r0) * (1 + 2 * CROP_MARGIN) / h, (c1 - c0) * (1 + 2 * CROP_MARGIN) / w)
    share = min(1.0, max(MIN_CROP_SHARE, share))
    ch, cw = max(1, round(share * h)), max(1, round(share * w))
    top = int(np.clip(round((r0 + r1 - ch) / 2), 0, h - ch))
    left = int(np.clip(round((c0 + c1 - cw) / 2), 0, w - cw))
    return Box(top, left, top + ch, left + cw)


def encode(
    clicks: list[Click],
    box: Box,
    spec: ModelSpec,
    prev_mask: np.ndarray | None = None,
) -> np.ndarray:
    """The guidance channels (G, h, w) float32 at the input size for clicks in image pixels and
    the previous label map (image size), both seen through `box`."""
    h, w = spec.input_size
    out = np.zeros((spec.guidance_channels, h, w), np.float32)
    if not spec.guided:
        return out
    bh, bw = box.shape
    radius = disc_radius(spec)
    yy, xx = np.ogrid[:h, :w]
    binary = spec.num_classes <= 2
    for c in clicks:
        # Pixel centres map to pixel centres, as cv2's resize does.
        y = (c.row - box.top + 0.5) * h / bh - 0.5
        x = (c.col - box.left + 0.5) * w / bw - 0.5
        cls = 1 if binary else c.class_value
        channel = 2 * (cls - 1) + (0 if c.positive else 1)
        out[channel][(yy - y) ** 2 + (xx - x) ** 2 <= radius * radius] = 1.0
    if spec.guidance_prev_mask and prev_mask is not None:
        crop = prev_mask[box.slices]
        foreground = max(1, spec.num_classes - 1)
        onehot = np.stack(
            [(crop > 0) if binary else (crop == k + 1) for k in range(foreground)], axis=-1
        ).astype(np.float32)
        out[2 * foreground :] = resize_to(onehot, (h, w)).transpose(2, 0, 1)
    return out


def model_input(
    x: np.ndarray,
    spec: ModelSpec,
    clicks: list[Click],
    prev_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, Box]:
    """(H, W, C) image as `preprocess.to_channels` gives it -> the network's input (C', h, w)
    for these clicks and the box it shows."""
    box = crop_box(x.shape[:2], clicks, prev_mask, spec.guidance_zoom)
    image = normalise(resize_to(x[box.slices], spec.input_size), spec)
    return with_guidance(image, spec, encode(clicks, box, spec, prev_mask)), box


def paste(
    probs: np.ndarray,
    box: Box,
    shape: tuple[int, int],
    prev_mask: np.ndarray | None = None,
) -> np.ndarray:
    """(C, h, w) probabilities of the crop -> (C, H, W) of the image: the crop's, resized to the
    box; outside it the previous mask, as certain (background where there is none)."""
    n = probs.shape[0]
    inside = resize_to(np.ascontiguousarray(probs.transpose(1, 2, 0)), box.shape)
    if box.shape == tuple(shape):
        return np.ascontiguousarray(inside.transpose(2, 0, 1))
    prev = np.zeros(shape, np.uint8) if prev_mask is None else prev_mask
    values = np.minimum(prev, n - 1) if n > 2 else (prev > 0).astype(np.uint8)
    out = (values[None] == np.arange(n, dtype=np.uint8)[:, None, None]).astype(np.float32)
    out[:, box.top : box.bottom, box.left : box.right] = inside.transpose(2, 0, 1)
    return out
