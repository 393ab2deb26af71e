"""NIfTI image volumes: a 3D file is one series of slices, a 4D file one series per time point
(a clinician scrolling fMRI or DCE wants one volume at a time; the time points follow each
other in the worklist).

Slices are shown in the plane of the file's third voxel axis as DICOM shows that plane, and
their patient-space geometry is the file's affine (`imaging.geometry.nifti_order`,
`nifti_planes`), so that measurements, other planes and a label volume exported from them
lie on the source. Files are read by their bytes, never by nibabel's guess from the name: a
file named .nii that is no NIfTI, a truncated stream or a header over the decode budget is
refused naming the file and the reason, before any voxel is allocated.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from medviewer.imaging.budget import DecodeBudget, OverBudget
from medviewer.imaging.errors import ImageLoadError, UnreadableFile
from medviewer.imaging.geometry import from_voxels, nifti_order, nifti_planes
from medviewer.imaging.records import Instance

if TYPE_CHECKING:
    import nibabel as nib

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_HEADER = 544  # a NIfTI-2 header (540 bytes) and the extension flag
NOT_NIFTI = "not a NIfTI file (no NIfTI-1 or NIfTI-2 header)"
_CHUNK = 1 << 24


def is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def sniff(path: Path) -> bool:
    """Named .nii or .nii.gz, or an uncompressed NIfTI-1 or -2 file under another name (its
    magic string); a .nii that is something else is then refused by `describe` with why."""
    if is_nifti_name(path):
        return True
    try:
        with path.open("rb") as fp:
            head = fp.read(348)
    except OSError:
        return False
    return head[344:348] == b"n+1\0" or head[4:8] == b"n+2\0"


def nifti_kind(head: bytes) -> type[nib.Nifti1Image] | None:
    """NIfTI-1 or -2 by the header's first field (sizeof_hdr, in either byte order)."""
    import nibabel as nib  # on use: importing the imaging package stays quick

    kinds = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
    if len(head) < 4:
        return None
    return kinds.get(int.from_bytes(head[:4], "little")) or kinds.get(
        int.from_bytes(head[:4], "big")
    )


@dataclass(frozen=True)
class NiftiHeader:
    """What the header declares, in the file's voxel order."""

    kind: type[nib.Nifti1Image]
    header: nib.Nifti1Header
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # where the voxels start in the (decompressed) stream
    gz: bool

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@contextmanager
def stream(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it is gzip whatever its name says; a damaged
    stream raises UnreadableFile with the reason."""
    try:
        with path.open("rb") as fp:
            gz = fp.read(2) == b"\x1f\x8b"
        with gzip.open(path, "rb") if gz else path.open("rb") as fp:
            yield fp
    except EOFError as e:
        raise UnreadableFile(
            path, "not a readable NIfTI file (truncated: its gzip stream ends early)"
        ) from e
    except (zlib.error, gzip.BadGzipFile) as e:
        raise UnreadableFile(path, f"not a readable NIfTI file (bad gzip data: {e})") from e
    except OSError as e:
        raise UnreadableFile(path, f"cannot read: {e.strerror or e}") from e


def parse_header(path: Path, head: bytes, gz: bool = False) -> NiftiHeader:
    """The header at the start of `head` (the stream's first MAX_HEADER bytes)."""
    kind = nifti_kind(head)
    if kind is None or len(head) < 348:
        raise UnreadableFile(path, NOT_NIFTI)
    try:
        header = kind.header_class.from_fileobj(io.BytesIO(head))
        shape = tuple(int(n) for n in header.get_data_shape())
        dtype = np.dtype(header.get_data_dtype())
        offset = int(header.get_data_offset())
    except Exception as e:
        raise UnreadableFile(path, f"not a readable NIfTI file ({_one_line(e)})") from e
    return NiftiHeader(kind, header, shape, dtype, offset, gz)


def read_header(path: Path) -> NiftiHeader:
    with stream(path) as fp:
        return parse_header(path, fp.read(MAX_HEADER), isinstance(fp, gzip.GzipFile))


def check_budget(path: Path, shape: tuple[int, ...], itemsize: int, budget: DecodeBudget) -> None:
    """The whole file's voxels as frames of its first two axes, held to the decode budget
    (used for label volumes, read whole)."""
    shape = shape or (1,)
    dims = (*shape, 1, 1)[:3]
    frames = math.prod(shape) // max(1, dims[0] * dims[1])
    budget.check(path, frames, (dims[1], dims[0]), itemsize * 8)


def read_bounded(path: Path, budget: DecodeBudget | None = None) -> bytes:
    """The file's bytes, decompressed when gzip, but never more than its header declares:
    the decode budget is checked from the header first, so a small .nii.gz that inflates to
    gigabytes is refused before it is inflated. A header that is no NIfTI gives the bytes
    read so far (the caller says what is wrong)."""
    with stream(path) as fp:
        chunks = [fp.read(MAX_HEADER)]
        try:
            h = parse_header(path, chunks[0])
        except UnreadableFile:
            return chunks[0]
        check_budget(path, h.shape, h.dtype.itemsize, budget or DecodeBudget.from_env())
        left = h.offset + h.data_bytes - len(chunks[0])
        while left > 0:  # in steps: a header may declare more than the file holds
            chunk = fp.read(min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


# -- image volumes ---------------------------------------------------------------------


def describe(path: Path, budget: DecodeBudget) -> list[Instance]:
    """One Instance per 3D volume of the file (its time points for a 4D file), from the
    header; UnreadableFile (OverBudget) naming the reason when it cannot be imported. The
    stream is read through once (not kept) so that a truncated file is refused here."""
    h = read_header(path)
    shape = list(h.shape)
    while len(shape) > 4 and shape[-1] == 1:  # trailing single dimensions are no dimension
        shape.pop()
    if len(shape) < 3:
        raise UnreadableFile(
            path, f"a {len(shape)}D image {_size(h.shape)}; NIfTI import takes 3D or 4D volumes"
        )
    if len(shape) > 4:
        raise UnreadableFile(
            path, f"a {len(shape)}D image {_size(h.shape)}; NIfTI import takes 3D or 4D volumes"
        )
    if h.dtype.kind not in "iuf" or h.dtype.itemsize > 8:
        raise UnreadableFile(
            path, f"{h.dtype} voxels; NIfTI import takes integer or real (not colour) volumes"
        )
    if 0 in shape:
        raise UnreadableFile(path, f"an empty volume {_size(h.shape)}")
    affine = np.asarray(h.header.get_best_affine(), dtype=float)
    order = nifti_order(affine) if np.isfinite(affine).all() else None
    if order is None:
        raise UnreadableFile(
            path, "its affine gives no orientation (a zero voxel size or a repeated axis)"
        )
    plane, step, depth = nifti_planes(affine, shape[:3], order)
    times = shape[3] if len(shape) == 4 else 1
    scaled = _scaled(h)
    bits = 32 if scaled and h.dtype.itemsize < 4 else h.dtype.itemsize * 8
    budget.check(path, depth, (plane.rows, plane.columns), bits)  # one volume at a time
    if times > budget.frames:
        raise OverBudget(path, f"{times:,} time points, over the decode budget of "
                         f"{budget.frames:,} frames (MEDVIEWER_MAX_FRAMES)")  # fmt: skip
    _check_length(path, h)
    uid = str(path.resolve())
    folder = str(path.parent.resolve())
    stem = _stem(path)
    name = "NIfTI-2" if h.header.sizeof_hdr == 540 else "NIfTI-1"
    return [
        Instance(
            path=path,
            kind="nifti",
            sop_instance_uid=uid if times == 1 else f"{uid}#t{t + 1}",
            series_uid=f"nifti:{uid}" + ("" if times == 1 else f"#t{t + 1:05d}"),
            study_uid=f"folder:{folder}",  # a folder is a study, as for raster files
            patient_id="",
            patient_name=path.parent.name,
            rows=plane.rows,
            columns=plane.columns,
            frames=depth,
            bits_allocated=bits,
            bits_stored=bits,
            modality="OT",
            series_description=stem if times == 1 else f"{stem} t{t + 1}/{times}",
            transfer_syntax_name=name + (" (gzip)" if h.gz else ""),
            pixel_spacing=plane.spacing,
            position=plane.position,
            orientation=plane.orientation,
            volume_index=t,
            frame_step=step,
            voxel_order=tuple(int(v) for v in np.asarray(order).ravel()),
        )
        for t in range(times)
    ]


def read_frames(instance: Instance) -> np.ndarray:
    """The instance's volume as (frames, rows, columns) in display order; ImageLoadError
    naming the file when it cannot be read."""
    path = instance.path
    try:
        with stream(path) as fp:
            h = parse_header(path, fp.read(MAX_HEADER))
            spatial = (*h.shape, 1, 1)[:3]
            if math.prod(spatial) != instance.frames * instance.rows * instance.columns:
                raise ImageLoadError(path, f"the file changed since import: {_size(h.shape)}")
            size = math.prod(spatial) * h.dtype.itemsize
            fp.seek(h.offset + instance.volume_index * size)
            raw = fp.read(size)
    except UnreadableFile as e:
        raise ImageLoadError(path, e.reason) from None
    if len(raw) != size:
        raise ImageLoadError(path, f"voxel data truncated: {len(raw)} of {size} bytes")
    data = np.frombuffer(raw, dtype=h.dtype).reshape(spatial, order="F")
    if _scaled(h):
        slope, inter = h.header.get_slope_inter()
        data = data.astype(np.float32) * np.float32(slope or 1.0) + np.float32(inter or 0.0)
    assert instance.voxel_order is not None
    order = np.asarray(instance.voxel_order, dtype=float).reshape(3, 2)
    from nibabel.orientations import apply_orientation

    ours = apply_orientation(data, order)
    return from_voxels(ours).astype(data.dtype.newbyteorder("="), copy=False)


def _scaled(h: NiftiHeader) -> bool:
    slope, inter = h.header.get_slope_inter()
    return (slope is not None and slope != 1.0) or (inter is not None and inter != 0.0)


def _check_length(path: Path, h: NiftiHeader) -> None:
    """The stream holds every voxel the header declares (read through, nothing kept)."""
    need = h.offset + h.data_bytes
    if h.gz:
        have = 0
        with stream(path) as fp:
            while chunk := fp.read(_CHUNK):
                have += len(chunk)
    else:
        have = path.stat().st_size
    if have < need:
        raise UnreadableFile(
            path,
            f"not a readable NIfTI file (truncated: {max(have - h.offset, 0)} bytes of voxel "
            f"data, its {_size(h.shape)} voxels need {h.data_bytes})",
        )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
