"""Three-plane reslicing of a 512x512x300 volume and the smart tools on a 512x512 slice.

Reslicing: ours is `Reslicer.plane` (a view) made contiguous with `np.ascontiguousarray`, the
array a viewer hands to its image item, per plane, at a moving crosshair. The baseline is the
naive way: copy the whole volume into the plane's screen orientation, then take the plane.
Target (issue 14): at most 30 ms per plane update. Each plane must equal the baseline's.

Smart tools on a 512x512 CT-like slice (int16 HU: body, organs, noise): threshold brush
(a radius-20 dab), region growing (one seed, 4-connected) and level tracing; target (issue 14)
under 200 ms each. Times are the best of N runs on a fresh mask each.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from harness import Row, best_of

from medviewer.editing import smart_tools
from medviewer.imaging.reslice import PLANES, Reslicer, VolumeAxes

NAME = "mpr"
SHAPE, QUICK_SHAPE = (300, 512, 512), (60, 512, 512)
RESLICE_TARGET = 0.030
TOOL_TARGET = 0.200


def ct_volume(shape: tuple[int, int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 20, shape).astype(np.int16) - 1000  # air
    s, r, c = np.ogrid[: shape[0], : shape[1], : shape[2]]
    body = ((r - shape[1] / 2) / 200) ** 2 + ((c - shape[2] / 2) / 230) ** 2 <= 1
    volume[np.broadcast_to(body, shape)] += 1040  # soft tissue around 40 HU
    return volume


def naive_plane(
    volume: np.ndarray, r: Reslicer, plane: str, at: tuple[int, int, int]
) -> np.ndarray:
    """Reorient the whole volume for this plane (a full copy), then take the plane."""
    fixed, down, right = r._layout(plane)  # the same orientation, copied
    full = np.transpose(volume, (fixed.axis, down.axis, right.axis))
    full = full[:, :: -1 if down.flip else 1, :: -1 if right.flip else 1].copy()
    i = at[fixed.axis]
    return full[r.shape[fixed.axis] - 1 - i if fixed.flip else i]


def _updates(
    volume: np.ndarray, r: Reslicer, plane: str, at: list[int]
) -> tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]]:
    """One plane update, ours and the baseline's, at the crosshair `at` (moved by ours)."""
    shape = r.shape

    def ours() -> np.ndarray:
        at[0] = (at[0] + 7) % shape[0]  # the crosshair moves between updates
        at[1] = (at[1] + 13) % shape[1]
        at[2] = (at[2] + 17) % shape[2]
        return np.ascontiguousarray(r.plane(volume, plane, tuple(at)).pixels)

    def base() -> np.ndarray:
        return naive_plane(volume, r, plane, tuple(at))

    return ours, base


def reslice_rows(quick: bool) -> list[Row]:
    shape = QUICK_SHAPE if quick else SHAPE
    volume = ct_volume(shape)
    r = Reslicer(shape, VolumeAxes.axial(1.25, 0.7, 0.7))
    repeat, base_repeat = (5, 1) if quick else (20, 3)
    rows = []
    for plane in PLANES:
        at = list(r.centre())
        ours, base = _updates(volume, r, plane, at)
        t_ours, t_base = best_of(ours, repeat), best_of(base, base_repeat)
        if not np.array_equal(r.plane(volume, plane, tuple(at)).pixels, base()):
            raise RuntimeError(f"{NAME}: the {plane} plane differs from the naive copy's")
        rows.append(
            Row(
                NAME,
                f"{plane} plane {shape[2]}x{shape[1]}x{shape[0]} int16",
                t_ours,
                "reorient whole volume, take plane",
                t_base,
                f"< {RESLICE_TARGET * 1000:g} ms",
                t_ours < RESLICE_TARGET,
            )
        )
    return rows


def ct_slice() -> np.ndarray:
    rng = np.random.default_rng(1)
    image = rng.normal(-1000, 15, (512, 512))
    yy, xx = np.mgrid[:512, :512]
    image[((yy - 256) / 200) ** 2 + ((xx - 256) / 230) ** 2 <= 1] = 40
    image[((yy - 220) / 60) ** 2 + ((xx - 300) / 80) ** 2 <= 1] = 90  # an organ
    # Reconstruction smooths noise: blur it over a few pixels, as in a real CT slice.
    image += cv2.GaussianBlur(rng.normal(0, 20, image.shape), (0, 0), 2.0)
    return image.astype(np.int16)


def tool_rows(quick: bool) -> list[Row]:
    image = ct_slice()
    repeat = 3 if quick else 10
    lo, hi = smart_tools.pick_range(image, 220, 300)
    # Level tracing is clicked on the organ's edge, where the iso-line at the clicked value
    # runs round the organ (halfway between organ and tissue, 65 HU).
    edge = 300 + int(np.argmin(np.abs(image[220, 300:400].astype(float) - 65)))
    cases = {
        "threshold brush dab r=20": lambda m: smart_tools.threshold_brush(
            m, image, [(220, 300)], 20, 1, lo, hi
        ),
        "region growing, 1 seed, tol 25 HU": lambda m: smart_tools.region_grow(
            m, image, [(220, 300)], 1, 25
        ),
        "level tracing (organ edge)": lambda m: smart_tools.level_trace(m, image, 220, edge, 1),
    }
    rows = []
    for case, tool in cases.items():
        if tool(np.zeros(image.shape, np.uint8)) is None:
            raise RuntimeError(f"{NAME}: {case} painted nothing")
        t = best_of(lambda tool=tool: tool(np.zeros(image.shape, np.uint8)), repeat)
        rows.append(
            Row(
                NAME,
                f"{case} 512x512",
                t,
                target=f"< {TOOL_TARGET * 1000:g} ms",
                met=t < TOOL_TARGET,
            )
        )
    return rows


def run(quick: bool = False) -> list[Row]:
    return reslice_rows(quick) + tool_rows(quick)
