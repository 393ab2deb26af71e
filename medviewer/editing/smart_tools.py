"""Tools that paint what the image shows: threshold brush, region growing, level tracing.

Each works on one 2D slice: a uint8 (H, W) label map and the image under it, in the image's
own units (HU for CT: pass `display.modality_values`, not the windowed grey). Like `label_ops`,
each edits the map in place, calls `before_write(rect, changed)` just before it writes and
returns the changed rectangle (y0, x0, y1, x1) or None; points are (y, x) pixel positions.
The region each would paint is also available alone (`*_region`) for a hover preview.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from medviewer.editing import label_ops
from medviewer.editing.errors import EditInputError
from medviewer.editing.label_ops import BeforeWrite, Point, Rect

Region = tuple[int, int, np.ndarray]  # (y0, x0, boolean array placed there)


def _check(mask: np.ndarray, image: np.ndarray, value: int | None = None) -> None:
    try:
        label_ops.check_label_map(mask, value)
    except ValueError as e:
        raise EditInputError(str(e)) from None
    if not isinstance(image, np.ndarray) or image.shape != mask.shape:
        got = image.shape if isinstance(image, np.ndarray) else type(image)
        raise EditInputError(f"image {got} and label map {mask.shape} differ in shape")


def _pixel(image: np.ndarray, y: float, x: float) -> tuple[int, int]:
    """The pixel under a point, which must lie on the image."""
    if not (math.isfinite(y) and math.isfinite(x)):
        raise EditInputError(f"point ({y}, {x}) is not finite")
    iy, ix = int(round(y)), int(round(x))
    if not (0 <= iy < image.shape[0] and 0 <= ix < image.shape[1]):
        raise EditInputError(f"point ({y}, {x}) lies outside the {image.shape} image")
    return iy, ix


def _paint(
    mask: np.ndarray, region: Region | None, value: int, before_write: BeforeWrite | None
) -> Rect | None:
    """Set `value` inside the region; the tight rectangle of pixels that changed."""
    if region is None:
        return None
    y0, x0, where = region
    h, w = where.shape
    changed = where & (mask[y0 : y0 + h, x0 : x0 + w] != value)
    ys = np.flatnonzero(changed.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(changed.any(axis=0))
    r0, r1, c0, c1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
    rect = (y0 + r0, x0 + c0, y0 + r1, x0 + c1)
    tight = changed[r0:r1, c0:c1]
    if before_write is not None:
        before_write(rect, tight)
    mask[rect[0] : rect[2], rect[1] : rect[3]][tight] = value
    return rect


# -- threshold brush ------------------------------------------------------------------------


def pick_range(
    image: np.ndarray, y: float, x: float, radius: int = 3, spread: float = 2.0
) -> tuple[float, float]:
    """An intensity range from the image around a click: mean +- `spread` SD of the pixels
    within `radius`, widened to hold the clicked pixel itself."""
    if radius < 0 or not spread >= 0:
        raise EditInputError(f"need radius >= 0 and spread >= 0, got {radius}, {spread}")
    iy, ix = _pixel(image, y, x)
    patch = image[
        max(iy - radius, 0) : iy + radius + 1, max(ix - radius, 0) : ix + radius + 1
    ].astype(np.float64)
    yy, xx = np.ogrid[: patch.shape[0], : patch.shape[1]]
    cy, cx = iy - max(iy - radius, 0), ix - max(ix - radius, 0)
    near = patch[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius]
    near = near[np.isfinite(near)]
    here = float(image[iy, ix])
    if near.size == 0:
        return here, here
    mean, sd = float(near.mean()), float(near.std())
    return min(mean - spread * sd, here), max(mean + spread * sd, here)


def threshold_region(
    image: np.ndarray, points: Sequence[Point], radius: float, lo: float, hi: float
) -> Region | None:
    """The brush stroke's pixels (as `label_ops.stroke` paints them) whose intensity lies in
    [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise EditInputError(f"intensity range [{lo}, {hi}] is empty or not finite")
    if not radius >= 0:
        raise EditInputError(f"brush radius must be >= 0, got {radius}")
    pts = [(float(py), float(px)) for py, px in points]
    if not pts:
        return None
    ys, xs = [p[0] for p in pts], [p[1] for p in pts]
    y0 = max(math.floor(min(ys) - radius), 0)
    x0 = max(math.floor(min(xs) - radius), 0)
    y1 = min(math.ceil(max(ys) + radius) + 1, image.shape[0])
    x1 = min(math.ceil(max(xs) + radius) + 1, image.shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    # label_ops owns which pixels a brush covers: stroke a scratch map of the bounding box.
    disc = np.zeros((y1 - y0, x1 - x0), np.uint8)
    label_ops.stroke(disc, [(py - y0, px - x0) for py, px in pts], radius, 1)
    values = image[y0:y1, x0:x1]
    return y0, x0, (disc == 1) & (values >= lo) & (values <= hi)


def threshold_brush(
    mask: np.ndarray,
    image: np.ndarray,
    points: Sequence[Point],
    radius: float,
    value: int,
    lo: float,
    hi: float,
    before_write: BeforeWrite | None = None,
) -> Rect | None:
    """Paint a brush stroke (one point: a dab) only where the image lies in [lo, hi]."""
    _check(mask, image, value)
    return _paint(mask, threshold_region(image, points, radius, lo, hi), value, before_write)


# -- region growing -------------------------------------------------------------------------


def grow_region(
    image: np.ndarray,
    seeds: Sequence[Point],
    tolerance: float,
    connectivity: int = 4,
    max_pixels: int | None = None,
) -> Region | None:
    """The pixels connected to a seed (4- or 8-connected) whose intensity lies within
    `tolerance` of the seeds' mean. None when it would exceed `max_pixels` (a leak: the
    caller says so and asks for a lower tolerance)."""
    if not seeds:
        raise EditInputError("region growing needs at least one seed point")
    if not tolerance >= 0:
        raise EditInputError(f"tolerance must be >= 0, got {tolerance}")
    if connectivity not in (4, 8):
        raise EditInputError(f"connectivity is 4 or 8, got {connectivity}")
    pixels = [_pixel(image, y, x) for y, x in seeds]
    seed_values = np.array([image[p] for p in pixels], dtype=np.float64)
    if not np.all(np.isfinite(seed_values)):
        return None
    mean = float(seed_values.mean())
    # float64 so unsigned images do not wrap around in the subtraction (as label_ops.flood_fill).
    near = (np.abs(image.astype(np.float64, copy=False) - mean) <= tolerance).view(np.uint8)
    _, comp, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=connectivity)
    ids = {int(comp[p]) for p in pixels if near[p]}
    if not ids:
        return None
    if max_pixels is not None and sum(int(stats[i, cv2.CC_STAT_AREA]) for i in ids) > max_pixels:
        return None
    x0 = min(int(stats[i, cv2.CC_STAT_LEFT]) for i in ids)
    y0 = min(int(stats[i, cv2.CC_STAT_TOP]) for i in ids)
    x1 = max(int(stats[i, cv2.CC_STAT_LEFT] + stats[i, cv2.CC_STAT_WIDTH]) for i in ids)
    y1 = max(int(stats[i, cv2.CC_STAT_TOP] + stats[i, cv2.CC_STAT_HEIGHT]) for i in ids)
    part = comp[y0:y1, x0:x1]
    where = part == next(iter(ids)) if len(ids) == 1 else np.isin(part, list(ids))
    return y0, x0, where


def region_grow(
    mask: np.ndarray,
    image: np.ndarray,
    seeds: Sequence[Point],
    value: int,
    tolerance: float,
    connectivity: int = 4,
    max_pixels: int | None = None,
    before_write: BeforeWrite | None = None,
) -> Rect | None:
    """Paint class `value` over the region grown from `seeds` (see `grow_region`)."""
    _check(mask, image, value)
    region = grow_region(image, seeds, tolerance, connectivity, max_pixels)
    return _paint(mask, region, value, before_write)


# -- level tracing --------------------------------------------------------------------------


def trace_level(image: np.ndarray, y: float, x: float, above: bool = True) -> Region | None:
    """The iso-contour at the clicked pixel's intensity that encloses it, filled: the pixels
    at least as bright as the clicked one (at most as bright when `above` is False)
    4-connected to it, with the holes inside its outline filled (as Slicer's level tracing)."""
    iy, ix = _pixel(image, y, x)
    level = float(image[iy, ix])
    if not math.isfinite(level):
        return None
    values = image.astype(np.float64, copy=False)
    side = (values >= level) if above else (values <= level)
    # Only the seed's connected part: flood it in a mask one pixel larger all round.
    region = np.zeros((image.shape[0] + 2, image.shape[1] + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    _, _, _, (rx, ry, rw, rh) = cv2.floodFill(side.view(np.uint8), region, (ix, iy), 0, 0, 0, flags)
    part = region[1 + ry : 1 + ry + rh, 1 + rx : 1 + rx + rw]
    # The outer contour, filled: a padded copy so an outline touching the box's edge closes.
    padded = cv2.copyMakeBorder(part, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(padded)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return ry, rx, filled[1:-1, 1:-1].astype(bool)


def level_trace(
    mask: np.ndarray,
    image: np.ndarray,
    y: float,
    x: float,
    value: int,
    above: bool = True,
    before_write: BeforeWrite | None = None,
) -> Rect | None:
    """Paint class `value` inside the traced level (see `trace_level`)."""
    _check(mask, image, value)
    return _paint(mask, trace_level(image, y, x, above), value, before_write)
