"""A stroke drawn on one plane of a label volume, written back into the volume as one undo step.

A stroke is painted with `label_ops` on a contiguous copy of the plane (fast, and the eraser
works as anywhere else); at its end, the pixels that differ from the plane are written into the
volume slice by slice, each slice's changed rectangle reported in the `stacked` frame first
(`before_write`, as `VolumeChange.apply` does), so one `UndoHistory(stacked(labels))` step
undoes a coronal or sagittal stroke that crossed many slices.
"""

from __future__ import annotations

import numpy as np

from medviewer.editing.label_ops import BeforeWrite
from medviewer.editing.volume_edits import Box, check_label_volume
from medviewer.imaging.reslice import PlaneName, Reslicer, Voxel


def voxel_indices(
    reslicer: Reslicer, plane: PlaneName, crosshair: Voxel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each pixel of `plane` through `crosshair`: its (slice, row, column) in the volume,
    as three read-only views (broadcast index grids resliced like the volume: no copies)."""
    shape = reslicer.shape
    grids = (
        np.broadcast_to(np.arange(shape[0])[:, None, None], shape),
        np.broadcast_to(np.arange(shape[1])[None, :, None], shape),
        np.broadcast_to(np.arange(shape[2])[None, None, :], shape),
    )
    s, r, c = (reslicer.plane(g, plane, crosshair).pixels for g in grids)
    return s, r, c


def write_plane(
    labels: np.ndarray,
    reslicer: Reslicer,
    plane: PlaneName,
    crosshair: Voxel,
    drawn: np.ndarray,
    before_write: BeforeWrite | None = None,
) -> Box | None:
    """Write `drawn` (the plane as the clinician left it) into `labels`; return the box of
    voxels that changed (half-open), or None when none did."""
    check_label_volume(labels)
    current = reslicer.plane(labels, plane, crosshair).pixels
    if drawn.shape != current.shape:
        raise ValueError(f"a {plane} plane is {current.shape}, the drawing is {drawn.shape}")
    diff = drawn != current
    if not diff.any():
        return None
    s_of, r_of, c_of = voxel_indices(reslicer, plane, crosshair)
    ss, rr, cc, values = s_of[diff], r_of[diff], c_of[diff], drawn[diff]
    rows = labels.shape[1]
    for k in np.unique(ss):
        on = ss == k
        r, c, v = rr[on], cc[on], values[on]
        y0, x0, y1, x1 = int(r.min()), int(c.min()), int(r.max()) + 1, int(c.max()) + 1
        if before_write is not None:
            changed = np.zeros((y1 - y0, x1 - x0), bool)
            changed[r - y0, c - x0] = True
            top = int(k) * rows
            before_write((top + y0, x0, top + y1, x1), changed)
        labels[int(k), r, c] = v
    return (
        int(ss.min()), int(rr.min()), int(cc.min()),
        int(ss.max()) + 1, int(rr.max()) + 1, int(cc.max()) + 1,
    )  # fmt: skip
