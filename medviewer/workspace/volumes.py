"""Which volumes a workspace's images make, for NIfTI export and import.

A volume is a series' single-frame DICOM slices of one size, orientation and spacing with
distinct positions (a series with a localiser and an axial stack makes two); a multi-frame
file (its frames unplaced, in file order, when its header gives no usable per-frame
positions); or one 2D image (a raster file, an image without Image Position, or slices that
share a position: each alone).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom

from medviewer.imaging.geometry import (
    Plane,
    Stack,
    frame_planes,
    in_source_order,
    split_stacks,
    stack,
)
from medviewer.workspace.store import ImageQuery

if TYPE_CHECKING:
    from medviewer.imaging import FrameRef
    from medviewer.workspace.store import ImageRow, Workspace


@dataclass
class Slice:
    row: ImageRow
    ref: FrameRef
    plane: Plane


def series_volumes(ws: Workspace) -> tuple[list[list[Slice]], list[str]]:
    """Every volume, and the series whose slices shared positions (split one by one)."""
    series: dict[tuple[str, str], list[Slice]] = {}
    for row in ws.images():
        ref = ws.frame_ref(row.id)
        series.setdefault((row.study_uid, row.series_uid), []).append(
            Slice(row, ref, Plane.of(ref.instance))
        )
    volumes: list[list[Slice]] = []
    shared: list[str] = []
    for slices in series.values():
        volumes += _volumes(slices, shared)
    return volumes, shared


def volume_holding(ws: Workspace, image_id: int) -> list[Slice]:
    """The volume (as `series_volumes` makes them) holding one image, read from its series'
    images alone."""
    row = ws.image(image_id)
    slices = []
    for r in ws.images(ImageQuery(series_uid=row.series_uid)):
        if r.study_uid == row.study_uid:
            ref = ws.frame_ref(r.id)
            slices.append(Slice(r, ref, Plane.of(ref.instance)))
    volume = next(v for v in _volumes(slices, []) if any(s.row.id == image_id for s in v))
    return volume


def volume_stack(volume: list[Slice]) -> Stack:
    """The volume's slice order and affine (`imaging.geometry.stack`); a NIfTI volume's whole
    in its source file's voxel order and affine (`in_source_order`), so that a label volume
    exported from it lies on the source and comes back onto it."""
    geometry = stack([s.plane for s in volume], _thickness(volume[0]))
    inst = volume[0].ref.instance
    if (
        inst.kind == "nifti"
        and inst.voxel_order is not None
        and len(volume) == inst.frames
        and volume[0].plane.placed
    ):
        order = np.asarray(inst.voxel_order, dtype=float).reshape(3, 2)
        geometry = in_source_order(geometry, order, (inst.columns, inst.rows, inst.frames))
    return geometry


def _volumes(slices: list[Slice], shared: list[str]) -> list[list[Slice]]:
    """The volumes of one series (see the module docstring)."""
    volumes: list[list[Slice]] = []
    single: list[Slice] = []
    by_file: dict[Path, list[Slice]] = {}
    for s in slices:
        if s.ref.instance.frames > 1:
            by_file.setdefault(s.ref.instance.path, []).append(s)
        else:
            single.append(s)
    for group in split_stacks([s.plane for s in single]):
        volumes.append([single[i] for i in group])
    for frames in by_file.values():
        planes = frame_planes(frames[0].ref.instance)
        for s in frames:
            s.plane = planes[s.ref.frame]
        if split_stacks([s.plane for s in frames]) != [list(range(len(frames)))]:
            # No usable per-frame geometry: the frames in file order, unplaced.
            for s in frames:
                s.plane = Plane(s.plane.rows, s.plane.columns, spacing=s.plane.spacing)
        volumes.append(sorted(frames, key=lambda s: s.ref.frame))
    _note_shared(volumes, shared)
    return volumes


def _note_shared(volumes: list[list[Slice]], shared: list[str]) -> None:
    """Name the series whose placed slices of one shape share positions (split one by one)."""
    alone: dict[tuple, list[Slice]] = {}
    for v in volumes:
        if len(v) == 1 and v[0].plane.placed and v[0].ref.instance.frames == 1:
            alone.setdefault(v[0].plane.shape_key(), []).append(v[0])
    for members in alone.values():
        if len(members) > 1:
            row = members[0].row
            label = f"series {row.series_description or row.series_uid} ({len(members)} slices)"
            if label not in shared:
                shared.append(label)


def _thickness(first: Slice) -> float:
    """How deep a one-slice volume is: the source's Slice Thickness, else 1 mm."""
    inst = first.ref.instance
    if inst.kind == "nifti" and inst.frame_step is not None:
        return float(np.linalg.norm(inst.frame_step))  # the file's slice spacing
    if inst.kind != "dicom":
        return 1.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(
                inst.path, stop_before_pixels=True, specific_tags=["SliceThickness"]
            )
        value = float(ds.get("SliceThickness") or 0)
    except Exception:  # noqa: BLE001 - a moved or odd file: the default depth will do
        return 1.0
    return value if np.isfinite(value) and value > 0 else 1.0
