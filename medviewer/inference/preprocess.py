"""Image -> normalised network input, the same way for inference and training."""

from __future__ import annotations

import cv2
import numpy as np

from medviewer.imaging.display import Image, Window, render
from medviewer.inference.errors import InferenceError
from medviewer.models.spec import MIN_SIDE, ModelSpec


def to_channels(image: Image, spec: ModelSpec) -> np.ndarray:
    """The image as the model sees it: (H, W, C) float32, 0..1, before normalisation.

    Models see the displayed image (modality LUT and window applied), so what the clinician
    reviews and what the model read agree. Grey <-> RGB convert; other channel counts are errors.
    """
    px = image.pixels
    if px.dtype.kind == "f" and not np.isfinite(px).all():
        raise InferenceError(f"{image.source}: image contains NaN or infinite pixel values")
    h, w = px.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InferenceError(
            f"{image.source}: image is {w}x{h}; this model needs at least {MIN_SIDE}x{MIN_SIDE}"
        )
    window = Window(*spec.window) if spec.window else None
    shown = render(image, window)
    channels = 1 if shown.ndim == 2 else shown.shape[2]
    if channels != spec.in_channels:
        if channels == 1 and spec.in_channels == 3:
            shown = np.repeat(shown[..., None], 3, axis=2)
        elif channels == 3 and spec.in_channels == 1:
            shown = cv2.cvtColor(shown, cv2.COLOR_RGB2GRAY)
        else:
            raise InferenceError(
                f"{image.source}: image has {channels} channel(s), model {spec.name} expects "
                f"{spec.in_channels}"
            )
    if shown.ndim == 2:
        shown = shown[..., None]
    return shown.astype(np.float32) / 255.0


def normalise(x: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(H, W, C) 0..1 -> (C, H, W) standardised with the spec's mean and std."""
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(((x - mean) / std).transpose(2, 0, 1))


def with_guidance(x: np.ndarray, spec: ModelSpec, guidance: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) normalised image -> the network's input: a guided model's guidance channels
    (`inference.clicks.encode`: 0..1 maps, never standardised) follow the image's; None is no
    clicks, all zero. An unguided spec's input is the image alone."""
    if not spec.guided:
        return x
    if guidance is None:
        guidance = np.zeros((spec.guidance_channels, *x.shape[1:]), np.float32)
    if guidance.shape != (spec.guidance_channels, *x.shape[1:]):
        raise InferenceError(
            f"model {spec.name}: guidance of shape {guidance.shape}, expected "
            f"{(spec.guidance_channels, *x.shape[1:])}"
        )
    return np.concatenate([x, guidance.astype(np.float32, copy=False)])


def resize_to(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) resized to (height, width); area when shrinking, linear when growing."""
    h, w = size
    if x.shape[:2] == (h, w):
        return x if x.ndim == 3 else x[..., None]  # what cv2.resize would copy unchanged
    shrink = h < x.shape[0] or w < x.shape[1]
    out = cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out if out.ndim == 3 else out[..., None]


def tiles(height: int, width: int, size: tuple[int, int], overlap: float) -> list[tuple[int, int]]:
    """Top-left corners of overlapping tiles covering the image; the last tile is flush."""
    th, tw = size

    def starts(n: int, t: int) -> list[int]:
        if n <= t:
            return [0]
        step = max(1, int(t * (1 - overlap)))
        out = list(range(0, n - t, step))
        return [*out, n - t]

    return [(y, x) for y in starts(height, th) for x in starts(width, tw)]
