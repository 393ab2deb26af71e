"""Changes to a label volume (slices, rows, columns) that undo as one step.

`UndoHistory` keeps tiles of a 2D uint8 label map. A C-contiguous label volume reshaped to
(slices * rows, columns) is such a map and a VIEW of the volume (`stacked`), so one history
over it undoes an edit touching many slices as one step (docs/ARCHITECTURE.md principle 6).
`VolumeChange.apply` reports each slice's changed rectangle in that stacked frame, with the
same `before_write(rect, changed)` convention as `label_ops`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medviewer.editing.errors import EditInputError
from medviewer.editing.label_ops import BeforeWrite

Box = tuple[int, int, int, int, int, int]  # (s0, r0, c0, s1, r1, c1), half-open


def check_label_volume(labels: np.ndarray) -> None:
    """Raise EditInputError unless `labels` is a uint8 (slices, rows, columns) volume."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 3 or labels.dtype != np.uint8:
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels)
        raise EditInputError(f"expected a uint8 (slices, rows, columns) label volume, got {got}")


def stacked(labels: np.ndarray) -> np.ndarray:
    """The volume as one (slices * rows, columns) label map sharing its memory, for
    `UndoHistory`; slice s, row r is stacked row s * rows + r."""
    check_label_volume(labels)
    if not labels.flags.c_contiguous:
        raise EditInputError("a label volume must be C-contiguous to be edited with undo")
    return labels.reshape(-1, labels.shape[2])


@dataclass(frozen=True)
class VolumeChange:
    """What an edit would write: `values` placed at `origin`, 0 meaning 'leave as it is'.
    Drawn as a preview, then `apply`-ed (accepted) or dropped."""

    origin: tuple[int, int, int]
    values: np.ndarray  # uint8 (slices, rows, columns) of the box

    @property
    def box(self) -> Box:
        s, r, c = self.origin
        ds, dr, dc = self.values.shape
        return (s, r, c, s + ds, r + dr, c + dc)

    @property
    def voxels(self) -> int:
        """How many voxels the change sets (some may hold that class already)."""
        return int(np.count_nonzero(self.values))

    @property
    def slices(self) -> list[int]:
        """The volume slices (axis 0) the change sets voxels on."""
        per = np.flatnonzero(self.values.reshape(self.values.shape[0], -1).any(axis=1))
        return [self.origin[0] + int(k) for k in per]

    def paint_into(self, out: np.ndarray) -> None:
        """Write the change into `out` (a preview volume of the labels' shape)."""
        s0, r0, c0, s1, r1, c1 = self.box
        view = out[s0:s1, r0:r1, c0:c1]
        np.copyto(view, self.values, where=self.values != 0)

    def apply(self, labels: np.ndarray, before_write: BeforeWrite | None = None) -> Box | None:
        """Write the change into `labels`; return the box of voxels that changed, or None.

        `before_write(rect, changed)` is called per slice just before it is written, `rect`
        in the `stacked` frame: pass `UndoHistory(stacked(labels)).record` inside one step.
        """
        check_label_volume(labels)
        s0, r0, c0, s1, r1, c1 = self.box
        if min(s0, r0, c0) < 0 or any(a > b for a, b in zip((s1, r1, c1), labels.shape)):
            raise EditInputError(f"change box {self.box} lies outside volume {labels.shape}")
        rows = labels.shape[1]
        out: Box | None = None
        for k in range(s1 - s0):
            new = self.values[k]
            view = labels[s0 + k, r0:r1, c0:c1]
            changed = (new != 0) & (view != new)
            ys = np.flatnonzero(changed.any(axis=1))
            if ys.size == 0:
                continue
            xs = np.flatnonzero(changed.any(axis=0))
            y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
            tight = changed[y0:y1, x0:x1]
            if before_write is not None:
                top = (s0 + k) * rows + r0
                before_write((top + y0, c0 + x0, top + y1, c0 + x1), tight)
            view[y0:y1, x0:x1][tight] = new[y0:y1, x0:x1][tight]
            box = (s0 + k, r0 + y0, c0 + x0, s0 + k + 1, r0 + y1, c0 + x1)
            out = box if out is None else _union(out, box)
        return out


def _union(a: Box, b: Box) -> Box:
    return (
        min(a[0], b[0]),
        min(a[1], b[1]),
        min(a[2], b[2]),
        max(a[3], b[3]),
        max(a[4], b[4]),
        max(a[5], b[5]),
    )
