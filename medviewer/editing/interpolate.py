"""Fill between slices: masks drawn on a few slices of a volume, interpolated to those between.

Per class, the key slices are those where the class is drawn (optionally only among the slices
the clinician edited). Between two consecutive key slices the class's shape is interpolated
by its signed distance (negative inside): slice k at fraction t between key slices A and B
holds the class where (1 - t) * d_A + t * d_B <= 0. The two shapes are first moved towards
each other along the line joining their centroids (by t and 1 - t of it), so a structure that
drifts across slices (a vessel, a lesion seen off-centre) is carried along rather than fading
out midway; this is the translation step of morphological contour interpolation (Albu et al.
2008; ITK's MorphologicalContourInterpolator, which Slicer's Fill between slices uses).

Classes are independent. Only background voxels of the slices between are filled: what is
drawn (any class) is never overwritten, and a voxel two classes both reach goes to the one it
lies deeper inside. Nothing is filled outside a class's drawn range. The result is a
`VolumeChange` to preview, then apply as one undo step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import ndimage

from medviewer.editing.errors import EditInputError
from medviewer.editing.volume_edits import VolumeChange, check_label_volume

_FAR = np.float32(1e9)  # the signed distance of "nowhere near the shape"


def key_slices(
    labels: np.ndarray, axis: int = 0, drawn: Iterable[int] | None = None
) -> dict[int, list[int]]:
    """Class -> the slices along `axis` it is drawn on (ascending), among `drawn` if given."""
    check_label_volume(labels)
    moved = np.moveaxis(labels, _axis(axis), 0)
    candidates = range(moved.shape[0]) if drawn is None else sorted(set(drawn))
    out: dict[int, list[int]] = {}
    for k in candidates:
        if not 0 <= k < moved.shape[0]:
            raise EditInputError(f"slice {k} lies outside the volume's {moved.shape[0]} slices")
        counts = np.bincount(moved[k].ravel(), minlength=256)
        for cls in np.flatnonzero(counts[1:]) + 1:
            out.setdefault(int(cls), []).append(k)
    return out


def fill_between(
    labels: np.ndarray,
    axis: int = 0,
    spacing: tuple[float, float] = (1.0, 1.0),
    classes: Iterable[int] | None = None,
    drawn: Iterable[int] | None = None,
) -> VolumeChange | None:
    """What filling between the drawn slices would change, or None when nothing.

    `axis` is the volume axis the slices were drawn across (`Reslicer.axis_of(plane)`);
    `spacing` the mm between rows and between columns of those slices (in array order of the
    two other axes), so distances are physical when pixels are not square. `classes` limits
    the classes filled; `drawn` limits the key slices to those the clinician drew.
    """
    check_label_volume(labels)
    axis = _axis(axis)
    if len(spacing) != 2 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise EditInputError(f"in-plane spacing must be two values > 0 mm, got {spacing}")
    moved = np.moveaxis(labels, axis, 0)
    keys = key_slices(labels, axis, drawn)
    wanted = set(keys) if classes is None else {int(c) for c in classes} & set(keys)
    pieces = []  # (class, slice, y0, x0, signed distance) within the image
    for cls in sorted(wanted):
        for a, b in zip(keys[cls][:-1], keys[cls][1:]):
            if b - a > 1:
                pieces += _interpolate(moved, cls, a, b, spacing)
    if not pieces:
        return None
    # One score and winner array over the box all pieces cover.
    s0 = min(p[1] for p in pieces)
    s1 = max(p[1] for p in pieces) + 1
    y0 = min(p[2] for p in pieces)
    x0 = min(p[3] for p in pieces)
    y1 = max(p[2] + p[4].shape[0] for p in pieces)
    x1 = max(p[3] + p[4].shape[1] for p in pieces)
    score = np.full((s1 - s0, y1 - y0, x1 - x0), _FAR, np.float32)
    winner = np.zeros(score.shape, np.uint8)
    free = moved[s0:s1, y0:y1, x0:x1] == 0
    for cls, k, py, px, d in pieces:
        h, w = d.shape
        sl = (k - s0, slice(py - y0, py - y0 + h), slice(px - x0, px - x0 + w))
        take = (d <= 0) & (d < score[sl]) & free[sl]
        score[sl][take] = d[take]
        winner[sl][take] = cls
    nz = np.nonzero(winner)
    if nz[0].size == 0:
        return None
    lo = [int(i.min()) for i in nz]
    hi = [int(i.max()) + 1 for i in nz]
    values = winner[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    origin = [s0 + lo[0], y0 + lo[1], x0 + lo[2]]
    # Back to the volume's own axis order.
    values = np.ascontiguousarray(np.moveaxis(values, 0, axis))
    order = list(range(1, 3))
    order.insert(axis, 0)
    return VolumeChange((origin[order[0]], origin[order[1]], origin[order[2]]), values)


def _interpolate(
    moved: np.ndarray, cls: int, a: int, b: int, spacing: tuple[float, float]
) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The signed distance of `cls` on each slice strictly between key slices a and b, each
    as (class, slice, y0, x0, array) cropped to the image."""
    shape = moved.shape[1:]
    inside_a, inside_b = moved[a] == cls, moved[b] == cls
    ca, cb = _centroid(inside_a), _centroid(inside_b)
    dy, dx = cb[0] - ca[0], cb[1] - ca[1]
    # A canvas holding both shapes wherever the interpolation moves them, with a margin of
    # background so every inside pixel has an outside one to measure to.
    ba, bb = _bbox(inside_a), _bbox(inside_b)
    margin = 2
    top = min(ba[0], bb[0]) - math.ceil(abs(dy)) - margin
    left = min(ba[1], bb[1]) - math.ceil(abs(dx)) - margin
    bottom = max(ba[2], bb[2]) + math.ceil(abs(dy)) + margin
    right = max(ba[3], bb[3]) + math.ceil(abs(dx)) + margin
    da = _signed_distance(_crop(inside_a, top, left, bottom, right), spacing)
    db = _signed_distance(_crop(inside_b, top, left, bottom, right), spacing)
    # The part of the canvas on the image.
    iy0, ix0 = max(top, 0), max(left, 0)
    iy1, ix1 = min(bottom, shape[0]), min(right, shape[1])
    crop = (slice(iy0 - top, iy1 - top), slice(ix0 - left, ix1 - left))
    out = []
    for k in range(a + 1, b):
        t = (k - a) / (b - a)
        sa = _shift(da, round(t * dy), round(t * dx))
        sb = _shift(db, round((t - 1) * dy), round((t - 1) * dx))
        d = ((1 - t) * sa + t * sb)[crop]
        out.append((cls, k, iy0, ix0, d.astype(np.float32, copy=False)))
    return out


def _signed_distance(inside: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """mm to the shape's edge: negative inside, positive outside, +-half a pixel at the edge."""
    half = 0.5 * min(spacing)
    outside = ndimage.distance_transform_edt(~inside, sampling=spacing)
    within = ndimage.distance_transform_edt(inside, sampling=spacing)
    return np.where(inside, half - within, outside - half).astype(np.float32)


def _shift(d: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`d` moved by (dy, dx) pixels; what comes in from beyond the canvas is far outside."""
    out = np.full_like(d, _FAR)
    h, w = d.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = d[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _crop(inside: np.ndarray, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """inside[top:bottom, left:right], with background where the box leaves the image."""
    out = np.zeros((bottom - top, right - left), bool)
    h, w = inside.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    out[y0 - top : y1 - top, x0 - left : x1 - left] = inside[y0:y1, x0:x1]
    return out


def _centroid(inside: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(inside)
    return float(ys.mean()), float(xs.mean())


def _bbox(inside: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(inside)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise EditInputError(f"a label volume has axes 0, 1 and 2, not {axis}")
    return int(axis)
