"""Where 2D images lie in patient space, and the NIfTI affine of a stack of them.

DICOM gives each slice the centre of its first pixel (Image Position), the directions of its
rows and columns (Image Orientation) and its pixel spacing, in LPS millimetres; NIfTI wants
one 4x4 affine from voxel indices to RAS millimetres. The voxel order is dcm2niix's, the
reference converter, so that a label volume overlays its conversion voxel for voxel:
i = column, j = row counted from the last row up, k = slice ascending along the normal
(row direction x column direction).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom

from medviewer.imaging.records import Instance

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Unplaced images (PNG, a radiograph without Image Position) are drawn as an axial slice at
# the origin, as dcm2niix does for them.
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
UNIT_SPACING = (1.0, 1.0)
POSITION_TOLERANCE = 1e-3  # mm: slices closer than this along the normal share a position


@dataclass(frozen=True)
class Plane:
    """One 2D image's place in patient space; None where its header does not say."""

    rows: int
    columns: int
    position: tuple[float, float, float] | None = None  # centre of the first pixel, LPS mm
    orientation: tuple[float, ...] | None = None  # row then column direction cosines
    spacing: tuple[float, float] | None = None  # (between rows, between columns), mm

    @classmethod
    def of(cls, inst: Instance) -> Plane:
        """Frame 1 of an instance, from what import recorded."""
        return cls(inst.rows, inst.columns, inst.position, inst.orientation, inst.pixel_spacing)

    @property
    def placed(self) -> bool:
        return self.position is not None and self.orientation is not None

    @property
    def normal(self) -> np.ndarray:
        o = np.asarray(self.orientation or AXIAL, dtype=float)
        return np.cross(o[:3], o[3:])

    def shape_key(self) -> tuple:
        """Planes that may share one volume have equal keys."""
        o = tuple(round(float(v), 4) for v in self.orientation or ())
        s = tuple(round(float(v), 4) for v in self.spacing or ())
        return (self.rows, self.columns, o, s)


@dataclass(frozen=True)
class Stack:
    """A volume made of planes: their order (first slice first) and its affine."""

    order: list[int]  # indices into the planes given
    affine: np.ndarray  # voxel (i, j, k) -> RAS mm
    uneven: float = 0.0  # largest departure of one slice gap from the mean gap, mm
    # A NIfTI source's voxel axes (`nifti_order`); None: ours (dcm2niix's).
    source_order: np.ndarray | None = None

    def to_voxels(self, slices: np.ndarray) -> np.ndarray:
        """(slice, row, column), slices in stack order -> this volume's NIfTI voxels."""
        voxels = to_voxels(slices)
        if self.source_order is None:
            return voxels
        from nibabel import orientations  # only for NIfTI sources: nibabel loads in 0.2 s

        return np.ascontiguousarray(
            orientations.apply_orientation(voxels, _inverse(self.source_order))
        )

    def voxel_shape(self, slices: int, rows: int, columns: int) -> tuple[int, int, int]:
        """The shape `to_voxels` gives for `slices` slices of rows x columns."""
        ours = (columns, rows, slices)
        if self.source_order is None:
            return ours
        shape = [0, 0, 0]
        for axis, (to, _) in enumerate(self.source_order):
            shape[axis] = ours[int(to)]
        return (shape[0], shape[1], shape[2])

    def from_voxels(self, volume: np.ndarray) -> np.ndarray:
        """This volume's NIfTI voxels -> (slice, row, column) in stack order."""
        if self.source_order is not None:
            from nibabel import orientations

            volume = orientations.apply_orientation(volume, self.source_order)
        return from_voxels(volume)


def stack(planes: Sequence[Plane], thickness: float = 1.0) -> Stack:
    """Planes of one shape key, placed with distinct positions along the normal, or all
    unplaced (then in the order given, `thickness` apart). One slice is `thickness` deep."""
    first = planes[0]
    o = np.asarray(first.orientation or AXIAL, dtype=float)
    row_dir, col_dir, normal = o[:3], o[3:], first.normal
    row_step, col_step = first.spacing or UNIT_SPACING
    if all(p.placed for p in planes):
        depth = [float(np.dot(normal, p.position)) for p in planes]  # type: ignore[arg-type]
        order = sorted(range(len(planes)), key=depth.__getitem__)
        positions = [np.asarray(planes[i].position, dtype=float) for i in order]
    else:
        order = list(range(len(planes)))
        positions = [k * thickness * normal for k in order]
    if len(positions) > 1:
        slice_step = (positions[-1] - positions[0]) / (len(positions) - 1)
        gaps = np.diff([float(np.dot(normal, p)) for p in positions])
        uneven = float(np.abs(gaps - gaps.mean()).max())
    else:
        slice_step, uneven = thickness * normal, 0.0
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_step  # along a row: the next column
    lps[:3, 1] = -col_dir * row_step  # j counts rows from the last one up
    lps[:3, 2] = slice_step
    lps[:3, 3] = positions[0] + (first.rows - 1) * row_step * col_dir
    return Stack(order, LPS_TO_RAS @ lps, uneven)


def split_stacks(planes: Sequence[Plane]) -> list[list[int]]:
    """The volumes a series' single-frame planes make: placed planes of one shape key with
    distinct positions along the normal go together; any other plane is a volume alone."""
    groups: dict[tuple, list[int]] = {}
    alone: list[list[int]] = []
    for i, p in enumerate(planes):
        if p.placed:
            groups.setdefault(p.shape_key(), []).append(i)
        else:
            alone.append([i])
    volumes: list[list[int]] = []
    for members in groups.values():
        normal = planes[members[0]].normal
        depth = sorted(float(np.dot(normal, planes[i].position)) for i in members)  # type: ignore[arg-type]
        if len(members) > 1 and min(np.diff(depth)) < POSITION_TOLERANCE:
            alone += [[i] for i in members]  # shared positions: not one volume (see caller)
        else:
            volumes.append(members)
    return volumes + alone


def to_voxels(slices: np.ndarray) -> np.ndarray:
    """(slice, row, column) label maps, slices already in stack order -> NIfTI (i, j, k)."""
    return np.ascontiguousarray(slices[:, ::-1, :].transpose(2, 1, 0))


def from_voxels(volume: np.ndarray) -> np.ndarray:
    """NIfTI (i, j, k) -> (slice, row, column), the inverse of `to_voxels`."""
    return np.ascontiguousarray(volume.transpose(2, 1, 0)[:, ::-1, :])


# A NIfTI volume is shown in the plane of its third voxel axis (the slice axis of nearly every
# writer), as DICOM shows that plane: axial with the patient's right on the left and anterior
# up, coronal with superior up, sagittal with anterior on the left; slices ascend along the
# normal. As nibabel axis codes of our voxel order (i along a row, j up the rows, k the normal).
_SHOWN = {0: ("P", "S", "R"), 1: ("L", "S", "P"), 2: ("L", "A", "S")}  # by the slice axis


def nifti_order(affine: np.ndarray) -> np.ndarray | None:
    """How a NIfTI file's voxel axes become ours (nibabel's ornt: per file axis, our axis and
    a flip); None when the affine gives no orientation (a zero or repeated axis)."""
    from nibabel import orientations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = orientations.io_orientation(np.asarray(affine, dtype=float))
    if np.isnan(source).any():
        return None
    shown = orientations.axcodes2ornt(_SHOWN[int(source[2, 0])])
    return orientations.ornt_transform(source, shown)


def nifti_planes(
    affine: np.ndarray, shape: Sequence[int], order: np.ndarray
) -> tuple[Plane, tuple[float, float, float], int]:
    """A NIfTI volume (file affine and 3D shape) in our voxel order (`nifti_order`): the plane
    of its first frame, the LPS step from one frame to the next, and how many frames."""
    from nibabel import orientations

    ours = [0, 0, 0]
    for axis, (to, _) in enumerate(order):
        ours[int(to)] = int(shape[axis])
    columns, rows, depth = ours
    lps = LPS_TO_RAS @ affine @ orientations.inv_ornt_aff(order, tuple(shape))
    col_step = float(np.linalg.norm(lps[:3, 0]))  # along a row: the next column
    row_step = float(np.linalg.norm(lps[:3, 1]))  # j counts rows from the last one up
    row_dir, col_dir = lps[:3, 0] / col_step, -lps[:3, 1] / row_step
    first = lps @ np.array([0.0, rows - 1, 0.0, 1.0])
    plane = Plane(
        rows,
        columns,
        tuple(float(v) for v in first[:3]),  # type: ignore[arg-type]
        tuple(float(v) for v in (*row_dir, *col_dir)),
        (row_step, col_step),
    )
    return plane, tuple(float(v) for v in lps[:3, 2]), depth  # type: ignore[return-value]


def in_source_order(volume: Stack, order: np.ndarray, shape: Sequence[int]) -> Stack:
    """`volume` (in our voxel order, of our `shape`) in its NIfTI source's voxel order and
    affine: a label volume exported from it lies on the source file voxel for voxel."""
    from nibabel import orientations

    back = _inverse(order)
    affine = volume.affine @ orientations.inv_ornt_aff(back, tuple(shape))
    return Stack(volume.order, affine, volume.uneven, np.asarray(order))


def _inverse(order: np.ndarray) -> np.ndarray:
    back = np.zeros_like(np.asarray(order, dtype=float))
    for axis, (to, flip) in enumerate(order):
        back[int(to)] = (axis, flip)
    return back


def frame_planes(inst: Instance) -> list[Plane]:
    """Every frame's plane: frame 1's for a single frame; a NIfTI volume's frames one
    `frame_step` apart; a multi-frame DICOM file's per-frame positions from its header
    (functional groups), else its frames unplaced."""
    if inst.kind == "nifti" and inst.position is not None and inst.frame_step is not None:
        first, step = np.asarray(inst.position), np.asarray(inst.frame_step)
        return [
            Plane(
                inst.rows,
                inst.columns,
                tuple(float(v) for v in first + k * step),  # type: ignore[arg-type]
                inst.orientation,
                inst.pixel_spacing,
            )
            for k in range(inst.frames)
        ]
    if inst.frames == 1 or inst.kind != "dicom":
        return [Plane.of(inst)] * inst.frames
    unplaced = [Plane(inst.rows, inst.columns, spacing=inst.pixel_spacing)] * inst.frames
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd values are the source's, not ours
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True)
        shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
        per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
        if len(per_frame) != inst.frames:
            return unplaced
        planes = []
        for group in per_frame:
            position = _item(group, shared, "PlanePositionSequence", "ImagePositionPatient")
            orientation = _item(
                group, shared, "PlaneOrientationSequence", "ImageOrientationPatient"
            )
            spacing = _item(group, shared, "PixelMeasuresSequence", "PixelSpacing")
            planes.append(
                Plane(
                    inst.rows,
                    inst.columns,
                    tuple(float(v) for v in position) if position else None,  # type: ignore[arg-type]
                    tuple(float(v) for v in orientation) if orientation else None,
                    tuple(float(v) for v in spacing) if spacing else inst.pixel_spacing,  # type: ignore[arg-type]
                )
            )
        return planes
    except Exception:  # noqa: BLE001 - a header that cannot say leaves the frames unplaced
        return unplaced


def _item(group: object, shared: object, sequence: str, keyword: str) -> object:
    """A functional group attribute: the frame's own, else the shared one."""
    for source in (group, shared):
        seq = getattr(source, sequence, None) if source is not None else None
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None
