"""Brush dab to repainted view, the Qt-free part: one mouse move of a drag on a large mask.

Per dab, ours is `EditSession.extend_stroke` (paint from the last mouse position, record the
undo tiles) plus colouring ONLY the changed rectangle into the viewer's persistent RGBA
overlay buffer (a class -> RGBA lookup table on the rect slice). The baseline makes the same
dab and then re-colours the whole mask, as a viewer that redraws its overlay from scratch
does. Both colour with the same uint32 lookup, so the ratio measures the rectangle alone.
The mouse moves 6 px per event along a curve across the image (a brisk 60 Hz drag); times are
the median over the drag's dabs. After the drag, ours' overlay must equal a full re-colouring.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
from harness import Row

from medviewer.editing import EditSession
from medviewer.imaging.palette import class_colour

NAME = "brush"
SIZES = (2048, 4096)
TARGETS = {2048: 0.016, 4096: 0.033}  # seconds per dab: a 60 Hz / 30 Hz repaint budget
RADII = (10, 40)  # a fine brush and a broad one, in image pixels
STEP = 6.0  # pixels between mouse events
DABS, QUICK_DABS = 400, 100
BASELINE_DABS, QUICK_BASELINE_DABS = 30, 8


def colour_table() -> np.ndarray:
    """(256,) uint32 whose bytes are RGBA per class; background fully transparent."""
    lut = np.zeros((256, 4), np.uint8)
    for cls in range(1, 256):
        lut[cls, :3] = class_colour(cls)
        lut[cls, 3] = 128
    return lut.view(np.uint32).ravel()


def drag_path(size: int, dabs: int) -> list[tuple[float, float]]:
    """Mouse positions STEP px apart along a Lissajous curve inside the image."""
    points, t = [], 0.0
    centre, amp = size / 2, size * 0.4
    while len(points) < dabs:
        y, x = centre + amp * math.sin(3 * t), centre + amp * math.sin(2 * t + 0.5)
        points.append((y, x))
        dy, dx = 3 * amp * math.cos(3 * t), 2 * amp * math.cos(2 * t + 0.5)
        t += STEP / max(math.hypot(dy, dx), 1e-6)  # advance about STEP px along the curve
    return points


def start_mask(size: int) -> np.ndarray:
    """An AI proposal to correct: a large class-1 disc and a class-2 square."""
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.ogrid[:size, :size]
    mask[(yy - size * 0.45) ** 2 + (xx - size * 0.5) ** 2 < (size * 0.3) ** 2] = 1
    mask[size // 10 : size // 4, size // 10 : size // 4] = 2
    return mask


def drag(
    size: int, radius: int, dabs: int, whole: bool
) -> tuple[list[float], EditSession, np.ndarray]:
    """Per-dab seconds of one drag, then the release's; the overlay is updated by rect, or
    wholly if `whole`."""
    lut = colour_table()
    session = EditSession(start_mask(size))
    overlay = lut[session.mask]  # the viewer's overlay before the drag starts
    times = []
    session.begin_stroke(value=3, radius=radius)
    for point in drag_path(size, dabs):
        start = time.perf_counter()
        rect = session.extend_stroke(point)
        if whole:
            overlay = lut[session.mask]
        elif rect is not None:
            y0, x0, y1, x1 = rect
            overlay[y0:y1, x0:x1] = lut[session.mask[y0:y1, x0:x1]]
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    session.end_stroke()  # the mouse release: the drag's tiles become one undo step
    times.append(time.perf_counter() - start)
    return times, session, overlay


def run(quick: bool = False) -> list[Row]:
    dabs = QUICK_DABS if quick else DABS
    baseline_dabs = QUICK_BASELINE_DABS if quick else BASELINE_DABS
    lut = colour_table()
    rows = []
    for size in SIZES:
        for radius in RADII:
            ours_times, session, overlay = drag(size, radius, dabs, whole=False)
            release = ours_times.pop()
            # Not an assert: it must hold under `python -O` too. A fast wrong view is a failure.
            if not np.array_equal(overlay, lut[session.mask]):
                raise RuntimeError(f"{NAME}: the rect-updated overlay differs from a full one")
            if session.history.undo_steps != 1:
                raise RuntimeError(f"{NAME}: one drag made {session.history.undo_steps} steps")
            base_times, _, _ = drag(size, radius, baseline_dabs, whole=True)
            base_times.pop()
            ours, base = statistics.median(ours_times), statistics.median(base_times)
            target = TARGETS[size]
            p95 = sorted(ours_times)[int(0.95 * (len(ours_times) - 1))]
            note = (
                f"median of {len(ours_times)} dabs (baseline {len(base_times)}), "
                f"ours p95 {p95 * 1000:.2f} ms, release (one sample) {release * 1000:.2f} ms, "
                f"undo tiles {session.history.memory_bytes >> 10} KiB"
            )
            rows.append(
                Row(
                    NAME,
                    f"dab + overlay {size}x{size} r={radius}",
                    ours,
                    "dab + recolour whole mask",
                    base,
                    f"< {target * 1000:g} ms",
                    ours < target,
                    note,
                )
            )
    return rows
