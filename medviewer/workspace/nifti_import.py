"""NIfTI label volumes become `import` revisions on the slices of the volume they lie on.

A label volume names no images: it is matched by geometry to one of the workspace's volumes
(`workspace.volumes`), whose shape and affine in our export's voxel order (dcm2niix's,
`imaging.geometry`; an imported NIfTI volume's own) must equal the file's, so that our own
exports come back. Every slice of
the matched volume gets a label map, empty where the file holds zeros (as a SEG's referenced
image without a frame): a label volume cannot tell an unmasked slice from an empty one. A file
is all or nothing: every check runs before the first revision is written, and a failure is one
line naming the file.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np

from medviewer.imaging.errors import UnreadableFile
from medviewer.imaging.geometry import Stack
from medviewer.imaging.nifti_volumes import NIFTI_SUFFIXES, NOT_NIFTI, nifti_kind, read_bounded
from medviewer.workspace.classes import palette_of
from medviewer.workspace.errors import MaskMismatch, SaveError, UnknownImage, UnreadableNifti
from medviewer.workspace.mask_results import MaskImportResult, revision_model
from medviewer.workspace.volumes import Slice, series_volumes, volume_stack

if TYPE_CHECKING:
    from medviewer.workspace.model_table import ModelVersion
    from medviewer.workspace.store import Workspace

# Our export stores the affine as float32 (sform); other writers round it too. Voxel steps
# (direction x spacing) within 1e-3, the origin within 0.01 mm.
STEP_TOLERANCE = 1e-3
ORIGIN_TOLERANCE_MM = 0.01
_NEAREST = 3  # candidates named when no volume matches
_FAILURES = (UnreadableNifti, UnknownImage, MaskMismatch, SaveError)


@dataclass(frozen=True)
class _Volume:
    """A workspace volume as a NIfTI sees it: slices in voxel (k) order, shape and affine."""

    slices: list[Slice]
    shape: tuple[int, int, int]  # its voxels' shape: (columns, rows, slices) unless NIfTI
    affine: np.ndarray
    geometry: Stack

    def describe(self) -> str:
        row = self.slices[0].row
        name = row.series_description or row.modality or "series"
        return f"{name} {row.series_uid} ({_size(self.shape)})"

    def offset(self, affine: np.ndarray) -> float:
        """Largest departure of `affine` from ours: how near a candidate is, for messages."""
        return float(np.abs(affine[:3] - self.affine[:3]).max())


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_files(folder: Path) -> list[Path]:
    """The NIfTI files under a folder, by name; a given file only if so named (any other file
    given is a SEG's, reported there)."""
    if folder.is_file():
        return [folder] if is_nifti(folder) else []
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and is_nifti(p)]


def import_niftis(
    ws: Workspace, paths: Iterable[Path], *, author: str, model: ModelVersion | None = None
) -> list[MaskImportResult]:
    """Each file's slices as `import` revisions (one result per slice), or one failed result
    naming the file and the reason. With `model`, values must be its classes."""
    paths = list(paths)
    if not paths:
        return []  # the workspace's volumes are only worked out when there is a file
    volumes = _volumes(ws)
    model_ref, num_classes = revision_model(model)
    results: list[MaskImportResult] = []
    for path in paths:
        try:
            results += _import_one(ws, path, volumes, author, model, model_ref, num_classes)
        except _FAILURES as e:
            results.append(MaskImportResult.failed(path, e))
    return results


def _volumes(ws: Workspace) -> list[_Volume]:
    out = []
    for volume in series_volumes(ws)[0]:
        geometry = volume_stack(volume)
        plane = volume[0].plane
        shape = geometry.voxel_shape(len(volume), plane.rows, plane.columns)
        out.append(_Volume([volume[i] for i in geometry.order], shape, geometry.affine, geometry))
    return out


def _import_one(
    ws: Workspace,
    path: Path,
    volumes: list[_Volume],
    author: str,
    model: ModelVersion | None,
    model_ref: tuple[str, str] | None,
    num_classes: int | None,
) -> list[MaskImportResult]:
    data, affine = read_label_volume(path)
    _check_classes(path, data, model)
    i, j, k = data.shape  # read_label_volume gives 3D
    volume = match_volume(path, (i, j, k), affine, volumes)
    slices = volume.geometry.from_voxels(data.astype(np.uint8))
    summary = {"nifti": {"file": path.name}}
    results = []
    for s, mask in zip(volume.slices, slices, strict=True):
        rev = ws.revisions.save_mask(
            s.row.id,
            mask,
            source="import",
            author=author,
            model=model_ref,
            num_classes=num_classes,
            summary=summary,
        )
        results.append(MaskImportResult(path, s.row.id, rev.id))
    return results


def read_label_volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The file's voxels (3D, whole numbers 0-255, any integer dtype) and affine, fully read
    here so that a truncated file fails before anything is written."""
    image = _read_image(path)
    try:
        data = np.asanyarray(image.dataobj)
        affine = np.asarray(image.affine, dtype=float)
    except Exception as e:  # odd headers (dtype, dimensions) fail in many ways
        raise UnreadableNifti(f"{path}: not a readable NIfTI file ({_one_line(e)})") from e
    # A 2D file is one slice; trailing single dimensions (time, 1) are no dimension.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., np.newaxis]
    if data.ndim != 3:
        raise MaskMismatch(f"{path}: a {data.ndim}D volume {data.shape}; a label volume is 3D")
    if data.dtype.kind not in "iub":
        if data.dtype.kind != "f":
            raise MaskMismatch(f"{path}: {data.dtype} voxels; a label volume holds integers")
        # Float files of whole numbers are common (many tools save labels so); fractions, as
        # in a probability map, are no class.
        whole = np.isfinite(data) & (data == np.rint(data))
        if not whole.all():
            bad = data[~whole][0]
            raise MaskMismatch(
                f"{path}: non-integer data ({int((~whole).sum())} voxel(s), first {bad:g}); "
                "a label volume holds class indices"
            )
    if data.size and (data.min() < 0 or data.max() > 255):
        raise MaskMismatch(
            f"{path}: values {data.min():g} to {data.max():g}; class indices are 0-255"
        )
    return data, affine


def _read_image(path: Path) -> nib.Nifti1Image:
    """The whole file as a NIfTI-1 or -2 image, read from bytes (not by nibabel's guess from
    the name) so that each failure says what is wrong: unreadable, cut short, or no NIfTI."""
    raw = _read_bounded(path)
    kind = nifti_kind(raw)
    if kind is None:
        raise UnreadableNifti(f"{path}: {NOT_NIFTI}")
    try:
        # The header alone first: a file cut short is said so, with the sizes.
        header = kind.header_class.from_fileobj(io.BytesIO(raw))
        shape = header.get_data_shape()
        have = max(len(raw) - int(header.get_data_offset()), 0)
        need = int(np.prod(shape, dtype=np.int64)) * header.get_data_dtype().itemsize
        if have < need:
            raise UnreadableNifti(
                f"{path}: not a readable NIfTI file (truncated: {have} bytes of voxel data, "
                f"its {_size(shape)} voxels need {need})"
            )
        return kind.from_bytes(raw)
    except UnreadableNifti:
        raise
    except Exception as e:  # nibabel raises many kinds on bad headers
        raise UnreadableNifti(f"{path}: not a readable NIfTI file ({_one_line(e)})") from e


def _read_bounded(path: Path) -> bytes:
    """The file's bytes within the decode budget (`imaging.nifti_volumes.read_bounded`)."""
    try:
        return read_bounded(path)
    except UnreadableFile as e:
        raise UnreadableNifti(f"{path}: {e.reason}") from e


def _check_classes(path: Path, data: np.ndarray, model: ModelVersion | None) -> None:
    """With a model, every value must be one of its classes (0 is background)."""
    if model is None or not model.classes:
        return
    count = len(model.classes)
    present = np.unique(data).astype(int)
    extra = [int(v) for v in present if v >= count]
    if extra:
        names = ", ".join(f"{v} {n}" for v, n in enumerate(palette_of(model).names))
        shown = ", ".join(map(str, extra[:8])) + (" ..." if len(extra) > 8 else "")
        raise MaskMismatch(
            f"{path}: label value(s) {shown} are not classes of model {model.name} "
            f"{model.version} ({names})"
        )


def match_volume(
    path: Path, shape: tuple[int, int, int], affine: np.ndarray, volumes: list[_Volume]
) -> _Volume:
    """The one volume of this shape whose affine equals `affine` within the tolerances."""
    found = [v for v in volumes if v.shape == shape and _same_affine(v.affine, affine)]
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownImage(
            f"{path}: its shape and affine fit {len(found)} volumes "
            f"({'; '.join(v.describe() for v in found[:_NEAREST])}); import it into a "
            "workspace that holds only one of them"
        )
    near = sorted(volumes, key=lambda v: (v.shape != shape, v.offset(affine)))[:_NEAREST]
    said = "; ".join(
        f"{v.describe()}, "
        + (
            "same affine"
            if _same_affine(v.affine, affine)
            else f"affine off by {v.offset(affine):.3g}"
        )
        for v in near
    )
    raise UnknownImage(
        f"{path}: no volume in the workspace matches its shape {_size(shape)} and affine "
        f"(nearest: {said or 'none, the workspace has no images'})"
    )


def _same_affine(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return bool(
        np.allclose(ours[:3, :3], theirs[:3, :3], rtol=0, atol=STEP_TOLERANCE)
        and np.allclose(ours[:3, 3], theirs[:3, 3], rtol=0, atol=ORIGIN_TOLERANCE_MM)
    )


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
