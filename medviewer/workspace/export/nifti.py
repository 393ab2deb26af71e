"""NIfTI export: per volume one NIfTI-1 label volume (.nii.gz, uint8, class values) aligned
with its source, in the voxel order and affine dcm2niix gives the source (`imaging.geometry`).

A volume is a series' single-frame DICOM slices of one size, orientation and spacing, sorted
by position (a series with a localiser and an axial stack makes two); a multi-frame file; or
one 2D image (a raster file, an image without Image Position: one slice at the origin, pixel
spacing where known). Only volumes with at least one mask are written; their other slices,
and slices whose mask file is lost (listed as failed), are zeros, and a note says how many
slices have masks.
"""

from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pydicom

from medviewer.atomic import atomic_write_bytes
from medviewer.imaging.geometry import Plane, frame_planes, split_stacks, stack, to_voxels
from medviewer.workspace.export import (
    ExportError,
    ExportReport,
    UniqueNames,
    chosen_mask,
    describe_image,
    image_stem,
    listing,
    read_chosen,
    safe_name,
)

if TYPE_CHECKING:
    from medviewer.imaging import FrameRef
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import ImageRow, Workspace

LABEL_INTENT = "label"  # NIFTI_INTENT_LABEL: voxel values are class indices
SCANNER = 1  # sform / qform code: scanner-based anatomical coordinates, as dcm2niix writes
UNEVEN_MM = 0.01  # slice gaps differing by more than this cannot be one affine exactly


@dataclass
class Slice:
    row: ImageRow
    ref: FrameRef
    plane: Plane
    rev: Revision | None


def export_nifti(ws: Workspace, out_dir: Path, which: str, report: ExportReport) -> None:
    series: dict[tuple[str, str], list[Slice]] = {}
    for row in ws.images():
        ref = ws.frame_ref(row.id)
        series.setdefault((row.study_uid, row.series_uid), []).append(
            Slice(row, ref, Plane.of(ref.instance), chosen_mask(ws, row.id, which))
        )
    names = UniqueNames()
    shared: list[str] = []
    for slices in series.values():
        for volume in _volumes(slices, shared):
            if all(s.rev is None for s in volume):
                report.skipped += len(volume)
            else:
                _write(ws, out_dir, which, report, volume, names)
    if shared:
        report.notes.append(
            f"Slices sharing one position were each written as a one-slice volume: "
            f"{listing(shared)}."
        )


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


def _write(
    ws: Workspace,
    out_dir: Path,
    which: str,
    report: ExportReport,
    volume: list[Slice],
    names: UniqueNames,
) -> None:
    first = volume[0]
    geometry = stack([s.plane for s in volume], _thickness(first))
    ordered = [volume[i] for i in geometry.order]
    rows, columns = first.plane.rows, first.plane.columns
    slices = np.zeros((len(ordered), rows, columns), np.uint8)
    masked = 0
    for k, s in enumerate(ordered):
        if s.rev is None:
            continue
        mask = read_chosen(ws, s.rev, s.row, report, s.ref.instance)
        if mask is None:
            continue
        if mask.shape != (rows, columns):  # cannot be placed; the others still are
            report.failed.append(
                f"{describe_image(s.row, s.ref.instance)}: its mask is "
                f"{mask.shape[1]}x{mask.shape[0]}, the image {columns}x{rows}"
            )
            continue
        slices[k] = mask
        masked += 1
    if not masked:
        return  # every mask of this volume was lost; they are listed as failed
    path = out_dir / names.claim(_stem(volume), ".nii.gz", first.row.id)
    write_label_volume(path, to_voxels(slices), geometry.affine, f"medviewer {which} masks")
    report.files.append(path)
    report.exported += masked
    if len(ordered) > 1:
        report.notes.append(
            f"{path.name}: {masked} of {len(ordered)} slices have a {which} mask; "
            "the others are zeros."
        )
    if geometry.uneven > UNEVEN_MM:
        report.notes.append(
            f"{path.name}: its slices are unevenly spaced (a gap differs from the mean by "
            f"{geometry.uneven:.3g} mm); the affine uses the mean spacing."
        )
    if not first.plane.placed and first.ref.instance.kind == "dicom":
        report.notes.append(
            f"{path.name}: the source has no Image Position/Orientation; the volume lies "
            "axially at the origin."
        )


def _stem(volume: list[Slice]) -> str:
    row, inst = volume[0].row, volume[0].ref.instance
    if len(volume) == 1 and (inst.kind == "raster" or not volume[0].plane.placed):
        return image_stem(row, inst)
    return safe_name(f"{row.series_description or row.modality or 'series'}_{row.series_uid}")


def _thickness(first: Slice) -> float:
    """How deep a one-slice volume is: the source's Slice Thickness, else 1 mm."""
    inst = first.ref.instance
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


def write_label_volume(
    path: Path, voxels: np.ndarray, affine: np.ndarray, description: str
) -> None:
    """A gzipped NIfTI-1 uint8 label volume, written atomically (gzip without a time stamp,
    so the same masks give the same bytes)."""
    image = nib.Nifti1Image(voxels.astype(np.uint8), affine)
    header = image.header
    header.set_data_dtype(np.uint8)
    header.set_xyzt_units("mm")
    header.set_intent(LABEL_INTENT)
    header["descrip"] = description[:79].encode("ascii", "replace")
    image.set_sform(affine, code=SCANNER)
    image.set_qform(affine, code=SCANNER)
    data = gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror}") from e
