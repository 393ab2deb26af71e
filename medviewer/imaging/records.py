"""What import finds: header-only records of images, grouped patient -> study -> series."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["dicom", "raster", "nifti"]
# Kinds whose identity is their file (path, else name, size and bytes), not a UID inside it.
FILE_KINDS = ("raster", "nifti")


@dataclass(frozen=True)
class Instance:
    """One file holding one or more frames, described from its header alone (no pixel decode)."""

    path: Path
    kind: Kind
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    rows: int
    columns: int
    frames: int = 1
    samples_per_pixel: int = 1
    photometric: str = "MONOCHROME2"
    bits_allocated: int = 8
    bits_stored: int = 8
    modality: str = ""
    body_part: str = ""  # BodyPartExamined, upper case; empty when the header has none
    patient_name: str = ""
    study_description: str = ""
    study_date: str = ""
    series_description: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    transfer_syntax: str = ""  # UID; empty for raster files
    transfer_syntax_name: str = ""
    pixel_spacing: tuple[float, float] | None = None  # (row, column) spacing in mm
    position: tuple[float, float, float] | None = None  # ImagePositionPatient of frame 1
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient (6 cosines)
    # Byte offset and dtype of native little-endian pixel data: the fast path reads these raw.
    pixel_offset: int | None = None
    raw_dtype: str | None = None
    # A NIfTI volume (`imaging.nifti_volumes`): which 3D volume of the file (a 4D file's time
    # point), the LPS step from one frame's first pixel to the next's, and how the file's voxel
    # axes turn into ours (`imaging.geometry.nifti_order`: file axis -> our axis, flip; flat).
    volume_index: int = 0
    frame_step: tuple[float, float, float] | None = None
    voxel_order: tuple[int, ...] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one decoded frame: (rows, columns) grey or (rows, columns, 3) colour."""
        return frame_shape(self.rows, self.columns, self.samples_per_pixel, self.photometric)


def frame_shape(rows: int, columns: int, samples: int, photometric: str) -> tuple[int, ...]:
    """Shape of one decoded frame: (rows, columns) grey or (rows, columns, 3) colour."""
    if samples > 1 or photometric == "PALETTE COLOR":
        return (rows, columns, 3)  # palette colour is decoded to RGB
    return (rows, columns)


@dataclass(frozen=True)
class FrameRef:
    """One displayable 2D image: a frame of an instance."""

    instance: Instance
    frame: int = 0


@dataclass
class Series:
    uid: str
    description: str
    modality: str
    number: int | None
    instances: list[Instance] = field(default_factory=list)
    sorted_by: str = "path"  # "position", "instance number" or "path"

    @property
    def frames(self) -> list[FrameRef]:
        """Every frame of the series in display order."""
        return [FrameRef(i, f) for i in self.instances for f in range(i.frames)]


@dataclass
class Study:
    uid: str
    description: str
    date: str
    series: list[Series] = field(default_factory=list)


@dataclass
class Patient:
    id: str
    name: str
    studies: list[Study] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    """A file that import could not use, and why, in words a user understands."""

    path: Path
    reason: str


@dataclass
class Catalog:
    """The result of an import: what could be read, and a report of every file that could not."""

    patients: list[Patient] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Not imported, by design: not an image (SR, RT Plan), not a regular file, outside a DICOMDIR.
    skipped: list[Problem] = field(default_factory=list)

    def series(self) -> list[Series]:
        return [se for p in self.patients for st in p.studies for se in st.series]

    def instances(self) -> list[Instance]:
        return [i for se in self.series() for i in se.instances]
