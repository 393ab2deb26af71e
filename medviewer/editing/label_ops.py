"""Label-map edits: brush, stroke, polygon, flood fill, small islands, accept, clear.

Every operation edits a uint8 (H, W) label map (a class index per pixel) in place and returns
the rectangle whose pixels it changed, (y0, x0, y1, x1) half-open, or None when no pixel
changed: the viewer repaints only that rectangle and the undo history saves only its tiles.

Each operation takes an optional `before_write(rect, changed)` and calls it just before it
writes, with `changed` the boolean array (shaped like rect) of the pixels about to change.
`UndoHistory.record` has that signature, so the history copies tiles while they are still
original, and skips tiles in the rectangle that no pixel of the edit touches.

Points are (y, x) in pixel units, floats allowed (a zoomed view reports sub-pixel mouse
positions); pixel (i, j) has its centre at (i, j). Coordinates outside the map are clipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from medviewer.imaging.labelmaps import remove_small_components

Rect = tuple[int, int, int, int]
Point = tuple[float, float]
BeforeWrite = Callable[[Rect, np.ndarray], None]

# A pixel exactly `radius` away is inside; the tolerance absorbs rounding in the projection
# onto a segment, so a stroke and a dab of the same radius draw the same disk at each end.
_EPS = 1e-6


def check_label_map(mask: np.ndarray, value: int | None = None) -> None:
    """Raise ValueError unless mask is a uint8 (H, W) label map and value a class index."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != np.uint8:
        got = f"{mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else type(mask)
        raise ValueError(f"expected a uint8 (H, W) label map, got {got}")
    # Checked here because writing 256 into uint8 would silently paint class 0.
    if value is not None and not 0 <= int(value) <= 255:
        raise ValueError(f"class index {value} is outside 0..255")


def union(a: Rect | None, b: Rect | None) -> Rect | None:
    """The smallest rectangle covering both; None stands for the empty rectangle."""
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _commit(
    mask: np.ndarray,
    y0: int,
    x0: int,
    changed: np.ndarray,
    new: int | np.ndarray,
    before_write: BeforeWrite | None,
) -> Rect | None:
    """Write `new` where `changed` (an array placed at (y0, x0)) is set; return the tight rect.

    `new` is a class index or an array in the same frame as `changed`.
    """
    rows = np.flatnonzero(changed.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(changed.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    changed = changed[r0:r1, c0:c1]
    rect = (y0 + r0, x0 + c0, y0 + r1, x0 + c1)
    if before_write is not None:
        before_write(rect, changed)
    view = mask[rect[0] : rect[2], rect[1] : rect[3]]
    view[changed] = new if np.isscalar(new) else new[r0:r1, c0:c1][changed]
    return rect


def _paint(
    mask: np.ndarray, y0: int, x0: int, where: np.ndarray, value: int, before_write
) -> Rect | None:
    """Set `value` inside `where` (placed at (y0, x0)); only pixels that differ count."""
    h, w = where.shape
    changed = where & (mask[y0 : y0 + h, x0 : x0 + w] != value)
    return _commit(mask, y0, x0, changed, value, before_write)


def _capsule(
    shape: tuple[int, ...],
    a: Point,
    b: Point,
    radius: float,
    spacing: tuple[float, float] = (1.0, 1.0),
) -> tuple[int, int, np.ndarray] | None:
    """Pixels within `radius` of segment a-b, as (y0, x0, boolean array), clipped to shape;
    distances in units of `spacing` (the size of a pixel's rows and columns)."""
    (ay, ax), (by, bx) = a, b
    sy, sx = spacing
    ry, rx = radius / sy, radius / sx
    y0 = max(math.floor(min(ay, by) - ry), 0)
    x0 = max(math.floor(min(ax, bx) - rx), 0)
    y1 = min(math.ceil(max(ay, by) + ry) + 1, shape[0])
    x1 = min(math.ceil(max(ax, bx) + rx) + 1, shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    py = (np.arange(y0, y1, dtype=np.float64)[:, None] - ay) * sy
    px = (np.arange(x0, x1, dtype=np.float64)[None, :] - ax) * sx
    dy, dx = (by - ay) * sy, (bx - ax) * sx
    length2 = dy * dy + dx * dx
    if length2 > 0:
        # Offset to the nearest point of the segment; the clip gives the round caps.
        t = np.clip((py * dy + px * dx) / length2, 0.0, 1.0)
        py, px = py - t * dy, px - t * dx
    return y0, x0, py * py + px * px <= radius * radius + _EPS


def stroke(
    mask: np.ndarray,
    points: Sequence[Point],
    radius: float,
    value: int,
    before_write: BeforeWrite | None = None,
    spacing: tuple[float, float] | None = None,
) -> Rect | None:
    """A polyline of thickness 2*radius+1 with round caps; value 0 is the eraser.

    Every segment is filled as the set of pixels within `radius` of it, so a fast mouse whose
    events are far apart still leaves a gap-free band, and one point is a disk (the dab).
    With `spacing` (mm between rows, between columns) the radius is in mm: the brush is round
    on a plane whose pixels are not square (a coronal plane of thick slices).
    """
    check_label_map(mask, value)
    if not radius >= 0:
        raise ValueError(f"brush radius must be >= 0, got {radius}")
    pts = [(float(y), float(x)) for y, x in points]
    if not all(math.isfinite(c) for p in pts for c in p):
        raise ValueError(f"stroke points must be finite, got {pts}")
    if not pts:
        return None
    segments = list(zip(pts[:-1], pts[1:])) or [(pts[0], pts[0])]
    # Long segments go in pieces so the work grows with the band's area, not its bounding
    # box's: a diagonal across a 4096 map would otherwise compute 16M distances.
    step = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    if not all(math.isfinite(v) and v > 0 for v in step):
        raise ValueError(f"pixel spacing must be two values > 0, got {spacing}")
    piece = max(4.0 * radius / min(step), 32.0)
    rect: Rect | None = None
    for (ay, ax), (by, bx) in segments:
        n = max(1, math.ceil(math.hypot(by - ay, bx - ax) / piece))
        for k in range(n):
            a = (ay + (by - ay) * k / n, ax + (bx - ax) * k / n)
            b = (ay + (by - ay) * (k + 1) / n, ax + (bx - ax) * (k + 1) / n)
            band = _capsule(mask.shape, a, b, radius, step)
            if band is not None:
                rect = union(rect, _paint(mask, *band, value, before_write))
    return rect


def brush(
    mask: np.ndarray,
    y: float,
    x: float,
    radius: float,
    value: int,
    before_write: BeforeWrite | None = None,
) -> Rect | None:
    """A filled disk: the pixels whose centres lie within `radius` of (y, x)."""
    return stroke(mask, [(y, x)], radius, value, before_write)


def fill_polygon(
    mask: np.ndarray,
    points: Sequence[Point],
    value: int,
    before_write: BeforeWrite | None = None,
) -> Rect | None:
    """Fill a polygon or lasso (vertices rounded to pixels, outline included); < 3 points: None."""
    check_label_map(mask, value)
    pts = np.round(np.asarray(points, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
    if len(pts) < 3:
        return None
    y0, x0 = max(int(pts[:, 0].min()), 0), max(int(pts[:, 1].min()), 0)
    y1 = min(int(pts[:, 0].max()) + 1, mask.shape[0])
    x1 = min(int(pts[:, 1].max()) + 1, mask.shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    # Rasterise into a buffer the size of the clipped bounding box, not of the whole map.
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [(pts[:, ::-1] - (x0, y0)).astype(np.int32)], 1)
    return _paint(mask, y0, x0, inside.astype(bool), value, before_write)


def flood_fill(
    mask: np.ndarray,
    image: np.ndarray,
    y: float,
    x: float,
    value: int,
    tolerance: float,
    before_write: BeforeWrite | None = None,
) -> Rect | None:
    """Fill the 4-connected region around the seed whose image value is within ±tolerance.

    The comparison is made in float64 on the given display values (cv2.floodFill's own range
    test would round them to float32), then cv2.floodFill finds the seed's connected part.
    """
    check_label_map(mask, value)
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    sy, sx = int(round(y)), int(round(x))
    if not (0 <= sy < mask.shape[0] and 0 <= sx < mask.shape[1]):
        return None
    seed = float(image[sy, sx])
    if not math.isfinite(seed):
        return None
    # float64 also keeps unsigned images from wrapping around in the subtraction.
    near = np.abs(image.astype(np.float64, copy=False) - seed) <= tolerance
    region = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (1 << 8)
    _, _, _, (rx, ry, rw, rh) = cv2.floodFill(near.view(np.uint8), region, (sx, sy), 0, 0, 0, flags)
    where = region[1 + ry : 1 + ry + rh, 1 + rx : 1 + rx + rw].astype(bool)
    return _paint(mask, ry, rx, where, value, before_write)


def remove_islands(
    mask: np.ndarray, min_pixels: int, before_write: BeforeWrite | None = None
) -> Rect | None:
    """Regions (8-connected, per class) smaller than min_pixels become background."""
    check_label_map(mask)
    cleaned = remove_small_components(mask, min_pixels)
    if cleaned is mask:  # min_pixels <= 1: nothing can be that small
        return None
    return _commit(mask, 0, 0, cleaned != mask, cleaned, before_write)


def accept(
    mask: np.ndarray, proposal: np.ndarray, before_write: BeforeWrite | None = None
) -> Rect | None:
    """Make the mask equal to the AI proposal."""
    check_label_map(mask)
    check_label_map(proposal)
    if proposal.shape != mask.shape:
        raise ValueError(f"proposal {proposal.shape} and mask {mask.shape} differ in shape")
    return _commit(mask, 0, 0, proposal != mask, proposal, before_write)


def clear(mask: np.ndarray, before_write: BeforeWrite | None = None) -> Rect | None:
    """Every pixel becomes background."""
    check_label_map(mask)
    return _commit(mask, 0, 0, mask != 0, 0, before_write)
