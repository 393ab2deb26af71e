"""NIfTI export: per volume one NIfTI-1 label volume (.nii.gz, uint8, class values) aligned
with its source, in the voxel order and affine dcm2niix gives the source (`imaging.geometry`).

Volumes are what `workspace.volumes` says: a series' stack of slices, a multi-frame file, or
one 2D image (a raster file, an image without Image Position: one slice at the origin, pixel
spacing where known). Only volumes with at least one mask are written; their other slices,
and slices whose mask file is lost (listed as failed), are zeros, and a note says how many
slices have masks.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from medviewer.atomic import atomic_write_bytes
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
from medviewer.workspace.volumes import Slice, series_volumes, volume_stack

if TYPE_CHECKING:
    from medviewer.deid.profile import Anonymiser
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import Workspace

LABEL_INTENT = "label"  # NIFTI_INTENT_LABEL: voxel values are class indices
SCANNER = 1  # sform / qform code: scanner-based anatomical coordinates, as dcm2niix writes
UNEVEN_MM = 0.01  # slice gaps differing by more than this cannot be one affine exactly


def export_nifti(
    ws: Workspace,
    out_dir: Path,
    which: str,
    report: ExportReport,
    *,
    anonymiser: Anonymiser | None = None,
) -> None:
    """With an `anonymiser`, file names come from the pseudonym and the replaced series UID
    (`export.anonymised.volume_stem`) and the header carries no text: the label volume is
    made afresh, so no source header field (descrip, aux_file, intent_name, db_name,
    extensions) is copied, and its own description is left empty."""
    revs = {row.id: chosen_mask(ws, row.id, which) for row in ws.images()}
    volumes, shared = series_volumes(ws)
    names = UniqueNames()
    for volume in volumes:
        if all(revs[s.row.id] is None for s in volume):
            report.skipped += len(volume)
        else:
            _write(ws, out_dir, which, report, volume, revs, names, anonymiser)
    if shared:
        report.notes.append(
            f"Slices sharing one position were each written as a one-slice volume: "
            f"{listing(shared)}."
        )


def _write(
    ws: Workspace,
    out_dir: Path,
    which: str,
    report: ExportReport,
    volume: list[Slice],
    revs: dict[int, Revision | None],
    names: UniqueNames,
    anonymiser: Anonymiser | None,
) -> None:
    first = volume[0]
    geometry = volume_stack(volume)
    ordered = [volume[i] for i in geometry.order]
    rows, columns = first.plane.rows, first.plane.columns
    slices = np.zeros((len(ordered), rows, columns), np.uint8)
    masked = 0
    for k, s in enumerate(ordered):
        rev = revs[s.row.id]
        if rev is None:
            continue
        mask = read_chosen(ws, rev, s.row, report, s.ref.instance)
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
    if anonymiser is None:
        stem, description = _stem(volume), f"medviewer {which} masks"
    else:
        from medviewer.workspace.export.anonymised import volume_stem

        stem, description = volume_stem(first.row, anonymiser), ""
    path = out_dir / names.claim(stem, ".nii.gz", first.row.id)
    write_label_volume(path, geometry.to_voxels(slices), geometry.affine, description)
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
    if inst.kind == "nifti":  # the source file's name (and time point): vol_t3_40_labels
        return safe_name(f"{row.series_description}_labels")
    if len(volume) == 1 and (inst.kind == "raster" or not volume[0].plane.placed):
        return image_stem(row, inst)
    return safe_name(f"{row.series_description or row.modality or 'series'}_{row.series_uid}")


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
