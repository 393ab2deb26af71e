"""Axial, coronal and sagittal planes of a volume, and a click in one of them back to voxels.

A volume is held as `load_volume` gives it: (slices, rows, columns), slices in the stack order
of `imaging.geometry.stack` (ascending along the normal). Its `Stack.affine` (the owner of
patient space) says where each axis points. Each of the three patient axes (left, posterior,
superior: LPS) is matched to the volume axis most nearly along it, as ITK-SNAP shows a volume
in its nearest anatomical orientation: a plane is then a slice of the array, transposed and
flipped as needed, i.e. a numpy VIEW, never a copy and never resampled. A gantry tilt or an
oblique acquisition is shown in its own grid (the planes are not exactly anatomical then).

Screen conventions (radiological, as Slicer/OHIF/ITK-SNAP draw them): the patient's right on
the screen's left in axial and coronal; axial seen from the feet (anterior up); coronal and
sagittal with the head up; sagittal with anterior on the left. A plane's `spacing` (mm between
its rows, between its columns) gives its physical aspect.

Planes of a label volume are writable views: a label_ops edit on a coronal plane changes the
label volume itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medviewer.imaging.geometry import LPS_TO_RAS, Stack

PlaneName = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[PlaneName, ...] = ("axial", "coronal", "sagittal")
Voxel = tuple[int, int, int]  # (slice, row, column) indices into the volume

# For each plane: the patient axis it holds fixed, then the patient axes (0 = L, 1 = P, 2 = S)
# and directions along its screen rows (down) and columns (right).
_SCREEN: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (1, +1), (0, +1)),  # down = posterior, right = patient's left
    "coronal": (1, (2, -1), (0, +1)),  # down = inferior, right = patient's left
    "sagittal": (0, (2, -1), (1, +1)),  # down = inferior, right = posterior
}


class GeometryError(ValueError):
    """A volume or geometry that cannot be resliced: says what and why."""


@dataclass(frozen=True)
class VolumeAxes:
    """Where the (slice, row, column) axes of a volume point: `steps[:, a]` is the LPS
    vector, in mm, from one voxel to the next along array axis a."""

    steps: np.ndarray  # (3, 3) LPS mm; columns: slice, row, column

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=float)
        if steps.shape != (3, 3) or not np.all(np.isfinite(steps)):
            raise GeometryError(f"volume axes must be a finite 3x3 matrix, got {self.steps!r}")
        spacing = np.linalg.norm(steps, axis=0)
        if np.any(spacing <= 0):
            raise GeometryError(
                f"volume has zero spacing along axis {int(np.argmin(spacing))} "
                f"(slice, row, column spacing {tuple(float(s) for s in spacing)} mm)"
            )
        if abs(np.linalg.det(steps / spacing)) < 1e-3:
            raise GeometryError("volume axes are parallel: the slices do not span a volume")
        object.__setattr__(self, "steps", steps)

    @classmethod
    def from_affine(cls, affine: np.ndarray) -> VolumeAxes:
        """From a `Stack.affine` (NIfTI i = column, j = row from the last up, k = slice; RAS)."""
        a = np.asarray(affine, dtype=float)
        if a.shape != (4, 4):
            raise GeometryError(f"an affine is 4x4, got shape {a.shape}")
        lps = LPS_TO_RAS @ a  # the flip is its own inverse
        # j counts rows upwards, so one row down the array is minus the j column.
        return cls(np.stack([lps[:3, 2], -lps[:3, 1], lps[:3, 0]], axis=1))

    @classmethod
    def from_stack(cls, stack: Stack) -> VolumeAxes:
        """From `geometry.stack`'s result, whose affine is in our voxel order."""
        # A stack re-expressed in a NIfTI source's voxel order (for export) maps other axes.
        if getattr(stack, "source_order", None) is not None:
            raise GeometryError("this stack is in a NIfTI file's voxel order, not the volume's")
        return cls.from_affine(stack.affine)

    @classmethod
    def axial(cls, slice_mm: float, row_mm: float, column_mm: float) -> VolumeAxes:
        """An axial volume of the given spacings (slices ascending towards the head)."""
        return cls(np.diag([column_mm, row_mm, slice_mm])[:, ::-1])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """mm between slices, rows and columns (slice spacing from positions, not
        Slice Thickness)."""
        s = np.linalg.norm(self.steps, axis=0)
        return (float(s[0]), float(s[1]), float(s[2]))

    @property
    def voxel_mm3(self) -> float:
        """One voxel's volume: exact for sheared (gantry-tilted) grids too."""
        return float(abs(np.linalg.det(self.steps)))


@dataclass(frozen=True)
class _Axis:
    axis: int  # volume array axis
    flip: bool  # True: the screen runs against the array's index


@dataclass(frozen=True)
class PlaneView:
    """One plane through the crosshair: pixels to draw and how to map them back."""

    name: PlaneName
    pixels: np.ndarray  # 2D view of the volume (rows down the screen, columns to the right)
    spacing: tuple[float, float]  # mm between rows, between columns
    index: int  # the plane's position along its own axis (0 .. depth - 1), screen order

    @property
    def aspect(self) -> float:
        """Height / width of one pixel on screen."""
        return self.spacing[0] / self.spacing[1]


class Reslicer:
    """The three planes of volumes of one shape and geometry (an image and its labels)."""

    def __init__(self, shape: tuple[int, ...], axes: VolumeAxes) -> None:
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"a volume is (slices, rows, columns), got shape {shape}")
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.axes = axes
        self._patient = _match_axes(axes.steps)  # patient axis -> (volume axis, sign)
        self._plane: dict[str, tuple[_Axis, _Axis, _Axis]] = {}
        for name, (fixed, (down, dsign), (right, rsign)) in _SCREEN.items():
            self._plane[name] = (
                self._screen_axis(fixed, +1),
                self._screen_axis(down, dsign),
                self._screen_axis(right, rsign),
            )

    def _screen_axis(self, patient: int, sign: int) -> _Axis:
        axis, along = self._patient[patient]
        return _Axis(axis, along * sign < 0)

    def axis_of(self, plane: PlaneName) -> int:
        """The volume axis a plane holds fixed (the one scrolling moves along, and along
        which slices drawn in this plane are interpolated)."""
        return self._layout(plane)[0].axis

    def depth(self, plane: PlaneName) -> int:
        """How many planes of this orientation the volume has."""
        return self.shape[self.axis_of(plane)]

    def plane(self, volume: np.ndarray, plane: PlaneName, crosshair: Voxel) -> PlaneView:
        """The plane through `crosshair`, as a view of `volume` (any dtype, this shape)."""
        if volume.shape[:3] != self.shape or volume.ndim != 3:
            raise GeometryError(f"volume of shape {volume.shape} given to a {self.shape} reslicer")
        fixed, down, right = self._layout(plane)
        voxel = self._check(crosshair)
        index: list[object] = [slice(None)] * 3
        index[fixed.axis] = voxel[fixed.axis]
        pixels = volume[tuple(index)]
        # The two remaining axes keep their array order; transpose when the screen wants the
        # later one down.
        if down.axis > right.axis:
            pixels = pixels.T
        if down.flip:
            pixels = pixels[::-1]
        if right.flip:
            pixels = pixels[:, ::-1]
        spacing = self.axes.spacing
        return PlaneView(
            plane,
            pixels,
            (spacing[down.axis], spacing[right.axis]),
            self._screen_index(fixed, voxel[fixed.axis]),
        )

    def planes(self, volume: np.ndarray, crosshair: Voxel) -> dict[PlaneName, PlaneView]:
        """All three planes through `crosshair`."""
        return {name: self.plane(volume, name, crosshair) for name in PLANES}

    def voxel_at(self, plane: PlaneName, row: float, column: float, crosshair: Voxel) -> Voxel:
        """The voxel under (row, column) of `plane` drawn through `crosshair`: the new
        crosshair of a click. Sub-pixel positions round to the nearest pixel; positions off
        the plane are clipped to its edge."""
        fixed, down, right = self._layout(plane)
        voxel = list(self._check(crosshair))
        for ax, value in ((down, row), (right, column)):
            n = self.shape[ax.axis]
            i = int(np.clip(round(float(value)), 0, n - 1))
            voxel[ax.axis] = n - 1 - i if ax.flip else i
        return (voxel[0], voxel[1], voxel[2])

    def point_in(self, plane: PlaneName, voxel: Voxel) -> tuple[int, int]:
        """Where `voxel` lies in `plane` (row, column): where to draw the crosshair lines."""
        _, down, right = self._layout(plane)
        v = self._check(voxel)
        return self._screen_index(down, v[down.axis]), self._screen_index(right, v[right.axis])

    def scroll(self, plane: PlaneName, crosshair: Voxel, steps: int) -> Voxel:
        """The crosshair moved `steps` planes along `plane`'s axis in screen order (towards
        the head for axial, posterior for coronal, the patient's left for sagittal), clipped."""
        fixed = self._layout(plane)[0]
        voxel = list(self._check(crosshair))
        n = self.shape[fixed.axis]
        at = self._screen_index(fixed, voxel[fixed.axis]) + int(steps)
        voxel[fixed.axis] = self._screen_index(fixed, int(np.clip(at, 0, n - 1)))
        return (voxel[0], voxel[1], voxel[2])

    def centre(self) -> Voxel:
        s, r, c = self.shape
        return (s // 2, r // 2, c // 2)

    def _screen_index(self, ax: _Axis, i: int) -> int:
        """Array index <-> screen index along one axis (the map is its own inverse)."""
        return self.shape[ax.axis] - 1 - i if ax.flip else i

    def _layout(self, plane: str) -> tuple[_Axis, _Axis, _Axis]:
        try:
            return self._plane[plane]
        except KeyError:
            raise GeometryError(f"unknown plane {plane!r}; one of {', '.join(PLANES)}") from None

    def _check(self, voxel: Voxel) -> Voxel:
        v = tuple(int(i) for i in voxel)
        if len(v) != 3 or not all(0 <= i < n for i, n in zip(v, self.shape)):
            raise GeometryError(f"voxel {tuple(voxel)} lies outside a volume of shape {self.shape}")
        return (v[0], v[1], v[2])


def _match_axes(steps: np.ndarray) -> list[tuple[int, int]]:
    """For each patient axis (L, P, S): the volume axis most nearly along it, and +1 / -1 for
    whether the volume's index runs with it. The three are matched together (the permutation
    with the largest total alignment), so an oblique volume never maps two patient axes to one
    volume axis."""
    cosines = np.abs(steps / np.linalg.norm(steps, axis=0))  # [patient axis, volume axis]
    best = max(
        itertools.permutations(range(3)),
        key=lambda p: sum(cosines[patient, p[patient]] for patient in range(3)),
    )
    return [(best[p], 1 if steps[p, best[p]] > 0 else -1) for p in range(3)]
