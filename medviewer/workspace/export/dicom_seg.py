"""DICOM SEG export with highdicom: one SEG series per source series, BINARY segmentation,
segment number = class value (class 0, background, is no segment).

Layout: the masked single-frame images of a series go into one SEG instance (one frame per
image and segment, empty frames omitted; images differing in size, frame of reference or
orientation go into separate instances). highdicom allows only one source image per SEG
when images have no patient coordinates (no Frame of Reference or Image Position), and
only one multi-frame source per SEG, so those get one SEG instance each, in the same SEG
series. Images without a mask of the chosen kind are left out and not referenced, so
"not segmented" stays distinct from "segmented, nothing found" (a referenced image with no
frames). What highdicom cannot reference (raster files, legacy multi-frame objects such as
RT Dose) is written as PNG label maps instead, with a note. Every SEG is read back with
highdicom before it counts as written; one that does not read back identically is replaced
by PNGs too.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import medviewer
from medviewer.atomic import atomic_write
from medviewer.workspace.classes import ClassResolver, Palette
from medviewer.workspace.export import (
    ExportError,
    ExportReport,
    UniqueNames,
    chosen_mask,
    describe_image,
    listing,
    read_chosen,
    safe_name,
)
from medviewer.workspace.export.png import export_png
from medviewer.workspace.revisions import HUMAN_SOURCES

if TYPE_CHECKING:
    from medviewer.deid.profile import Anonymiser
    from medviewer.imaging import FrameRef
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import ImageRow, Workspace

# Generic codes: a model's classes say nothing more specific about what they segment.
CATEGORY = codes.SCT.Tissue
PROPERTY_TYPE = codes.SCT.Tissue
NOT_DICOM = "they are not DICOM files (PNG/JPEG/TIFF), which a DICOM SEG cannot reference"
NO_THICKNESS = (
    "they have a patient position but no Slice Thickness (0018,0050), which a SEG of "
    "positioned images must carry"
)
SPLIT_STACKS = (
    "images differ in size, frame of reference or orientation, so each kind got its own SEG "
    "file, in one SEG series per source series."
)
SPLIT_UNPLACED = (
    "images have no patient position, which highdicom needs to put several in one SEG, so "
    "each got its own SEG file, in one SEG series per source series."
)
UNNAMED = (
    "the masks name no registered model, so the segments are called 'Class N' and get "
    "default colours."
)
# Type 2 attributes highdicom copies from the source: absent in some anonymised files.
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


class Unsupported(Exception):
    """Why these images cannot go into a SEG, in words for the export report."""


@dataclass
class Item:
    row: ImageRow
    ref: FrameRef
    rev: Revision


@dataclass
class Context:
    """What every series' export shares: where to write, and what to report at the end."""

    ws: Workspace
    out_dir: Path
    which: str
    report: ExportReport
    resolver: ClassResolver
    anonymiser: Anonymiser | None = None  # de-identify each SEG and copy its sources
    fallback: dict[str, list[Item]] = field(default_factory=dict)  # reason -> PNG instead
    grouped: dict[str, list[str]] = field(default_factory=dict)  # note -> series it is about

    def note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)


def export_dicom_seg(
    ws: Workspace,
    out_dir: Path,
    which: str,
    report: ExportReport,
    *,
    anonymiser: Anonymiser | None = None,
    image_ids: Collection[int] | None = None,
) -> None:
    ctx = Context(ws, out_dir, which, report, ClassResolver(ws), anonymiser)
    series: dict[tuple[str, str], list[Item]] = {}
    for row in ws.images():
        if image_ids is not None and row.id not in image_ids:
            continue
        rev = chosen_mask(ws, row.id, which)
        if rev is None:
            report.skipped += 1
            continue
        item = Item(row, ws.frame_ref(row.id), rev)
        if item.ref.instance.kind != "dicom":
            ctx.fallback.setdefault(NOT_DICOM, []).append(item)
        else:
            series.setdefault((row.study_uid, row.series_uid), []).append(item)
    for items in series.values():
        SeriesExport(ctx).run(items)
    for text, labels in ctx.grouped.items():
        report.notes.append(f"{listing(labels)}: {text}")
    names = UniqueNames()
    for reason, items in ctx.fallback.items():
        files = export_png(
            ws,
            out_dir,
            which,
            report,
            rows=[i.row for i in items],
            names=names,
            anonymiser=anonymiser,
        )
        written = [
            f"{describe_image(i.row, i.ref.instance)} -> {files[i.row.id].name}"
            for i in items
            if i.row.id in files
        ]
        if written:
            report.notes.append(
                f"Written as PNG label maps instead of DICOM SEG, because {reason}: "
                f"{listing(written)}."
            )


class SeriesExport:
    """The SEG instances of one source series, all in one new SEG series."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ws, self.which = ctx.ws, ctx.which
        self.series_uid = generate_uid()
        self.instances = 0
        self.headers: dict[Path, Dataset] = {}

    def run(self, items: list[Item]) -> None:
        label = self._label(items)
        for unit in self._units([i for i in items if self._header(i) is not None], label):
            try:
                self._write(unit)
            except Unsupported as e:
                if len(unit) > 1 and unit[0].ref.instance.frames == 1:
                    self.ctx.note(
                        f"{label}: {len(unit)} of its images could not share one SEG ({e}), "
                        "so each got its own SEG file in the same SEG series."
                    )
                    for item in unit:
                        self._write_or_fall_back([item])
                else:
                    self.ctx.fallback.setdefault(str(e), []).extend(unit)

    def _units(self, items: list[Item], label: str) -> list[list[Item]]:
        """The images of each SEG instance to write (see the module docstring)."""
        units: list[list[Item]] = []
        single: list[Item] = []
        by_file: dict[Path, list[Item]] = {}
        for item in items:
            ds = self.headers[item.ref.instance.path]
            if item.ref.instance.frames > 1:
                by_file.setdefault(item.ref.instance.path, []).append(item)
            elif _placed(ds) and not ds.get("SliceThickness"):
                self.ctx.fallback.setdefault(NO_THICKNESS, []).append(item)
            else:
                single.append(item)
        if single and all(_placed(self.headers[i.ref.instance.path]) for i in single):
            stacks: dict[tuple, list[Item]] = {}
            for item in single:
                key = _stack_key(self.headers[item.ref.instance.path])
                stacks.setdefault(key, []).append(item)
            units += stacks.values()
            if len(stacks) > 1:
                self._group(SPLIT_STACKS, label)
        elif single:
            units += [[i] for i in single]
            if len(single) > 1:
                self._group(SPLIT_UNPLACED, label)
        return units + list(by_file.values())

    def _group(self, text: str, label: str) -> None:
        labels = self.ctx.grouped.setdefault(text, [])
        if label not in labels:
            labels.append(label)

    def _write_or_fall_back(self, unit: list[Item]) -> None:
        try:
            self._write(unit)
        except Unsupported as e:
            self.ctx.fallback.setdefault(str(e), []).extend(unit)

    def _header(self, item: Item) -> Dataset | None:
        path = item.ref.instance.path
        if path not in self.headers:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # odd values are the source's, not ours
                    self.headers[path] = _complete(pydicom.dcmread(path, stop_before_pixels=True))
            except Exception as e:  # noqa: BLE001 - moved, deleted or corrupt since import
                reason = (e.strerror if isinstance(e, OSError) else None) or str(e)
                self.ctx.fallback.setdefault(
                    f"their DICOM file could not be read ({reason})", []
                ).append(item)
                return None
        return self.headers[path]

    def _label(self, unit: list[Item]) -> str:
        row = unit[0].row
        desc = f" '{row.series_description}'" if row.series_description else ""
        return f"Series{desc} ({row.series_uid})"

    # -- one SEG instance --------------------------------------------------------------

    def _write(self, unit: list[Item]) -> None:
        inst = unit[0].ref.instance
        if inst.frames > 1:
            source = self.headers[inst.path]
            if "SharedFunctionalGroupsSequence" not in source or not _placed(source):
                raise Unsupported(
                    "they are frames of a multi-frame image without per-frame plane positions "
                    "(e.g. RT Dose or another legacy multi-frame), whose frames highdicom "
                    "cannot reference"
                )
        # An unreadable mask is listed as failed and left out; the others are still written.
        masks = [read_chosen(self.ws, i.rev, i.row, self.ctx.report, i.ref.instance) for i in unit]
        readable = [(i, m) for i, m in zip(unit, masks, strict=True) if m is not None]
        if not readable:
            return
        unit = [i for i, _ in readable]
        if inst.frames > 1:
            sources = [source]
            planes = np.zeros((inst.frames, inst.rows, inst.columns), np.uint8)
            for item, mask in readable:
                planes[item.row.frame] = mask
            if len(unit) < inst.frames:
                self.ctx.note(
                    f"{inst.path.name}: {inst.frames - len(unit)} of its {inst.frames} frames "
                    f"have no {self.which} mask; the SEG stores them as empty."
                )
        else:
            sources = [self.headers[i.ref.instance.path] for i in unit]
            planes = np.stack([m for _, m in readable])
        palette = self._palette(unit, int(planes.max()))
        seg = self._segmentation(unit, sources, planes, palette)
        uids = [str(s.SOPInstanceUID) for s in sources]
        deid = self.ctx.anonymiser
        if deid is not None:  # in memory: an identifying SEG never reaches the export folder
            deid.dataset(seg)
            uids = [deid.mapping.uid(uid) for uid in uids]
        self.instances += 1
        path = self.ctx.out_dir / self._file_name(unit)
        try:
            atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))
        except OSError as e:
            raise ExportError(f"{path}: cannot write: {e.strerror}") from e
        try:
            _check_read_back(path, uids, planes, by_frame=inst.frames > 1)
        except Unsupported:
            path.unlink(missing_ok=True)
            self.instances -= 1
            raise
        self.ctx.report.files.append(path)
        self.ctx.report.exported += len(unit)
        if deid is not None:
            self._copy_sources(unit, deid)

    def _copy_sources(self, unit: list[Item], deid: Anonymiser) -> None:
        """The de-identified sources the SEG references, once per file."""
        from medviewer.workspace.export.anonymised import BURNED_IN, write_source

        for path in dict.fromkeys(i.ref.instance.path for i in unit):
            copy, burned_in = write_source(deid, path, self.ctx.out_dir)
            self.ctx.report.files.append(copy)
            if burned_in:
                self._group(BURNED_IN, self._label(unit))

    def _file_name(self, unit: list[Item]) -> str:
        row = unit[0].row
        if self.ctx.anonymiser is not None:  # no description or original UID in the name
            stem = safe_name(
                f"{row.modality or 'series'}_{self.ctx.anonymiser.mapping.uid(row.series_uid)}"
            )
        else:
            stem = safe_name(
                f"{row.series_description or row.modality or 'series'}_{row.series_uid}"
            )
        return f"{stem}_{self.instances}.seg.dcm" if self.instances > 1 else f"{stem}.seg.dcm"

    def _palette(self, unit: list[Item], top: int) -> Palette:
        """The classes of the newest mask's model; disagreements and unknowns are noted."""
        palettes = {self.ctx.resolver.palette(i.rev) for i in unit}
        newest = max(unit, key=lambda i: i.rev.id)
        palette = self.ctx.resolver.palette(newest.rev)
        label = self._label(unit)
        if len({p.names for p in palettes}) > 1:
            self.ctx.note(
                f"{label}: the masks come from models with different classes "
                f"({listing(sorted(str(p.model) for p in palettes))}); the segments use the "
                f"classes of {palette.model or 'no model'}, of the newest mask."
            )
        if palette.model is None:
            self._group(UNNAMED, label)
        elif top >= len(palette.names):
            self.ctx.note(
                f"{label}: the masks hold class values up to {top}, model {palette.model} "
                f"names only {len(palette.names) - 1} classes; the others are called 'Class N'."
            )
        # At least one segment: highdicom needs one even when every mask is empty.
        return palette.extended(max(top + 1, len(palette.names), 2))

    def _segmentation(
        self, unit: list[Item], sources: list[Dataset], planes: np.ndarray, palette: Palette
    ) -> hd.seg.Segmentation:
        revs = [i.rev for i in unit]
        manual = all(r.source in HUMAN_SOURCES for r in revs)
        algorithm = None if manual else _algorithm(revs)
        segments = [
            hd.seg.SegmentDescription(
                segment_number=value,
                segment_label=palette.names[value][:64],
                segmented_property_category=CATEGORY,
                segmented_property_type=PROPERTY_TYPE,
                algorithm_type="MANUAL" if manual else "AUTOMATIC",
                algorithm_identification=algorithm,
                display_color=hd.color.CIELabColor.from_rgb(*palette.colors[value]),
            )
            for value in range(1, len(palette.names))
        ]
        authors = {r.author for r in revs}
        # Content Creator's Name holds one person; several authors leave it empty (type 2).
        creator = _person(authors.pop()) if manual and len(authors) == 1 else None
        created = datetime.fromtimestamp(max(r.created_at for r in revs))
        src = sources[0]
        kind = "final (confirmed)" if self.which == "final" else "original (AI)"
        try:
            seg = hd.seg.Segmentation(
                source_images=sources,
                pixel_array=planes,
                segmentation_type="BINARY",
                segment_descriptions=segments,
                series_instance_uid=self.series_uid,
                series_number=1000 + int(src.get("SeriesNumber") or 0),
                sop_instance_uid=generate_uid(),
                instance_number=self.instances + 1,
                manufacturer="medviewer",
                manufacturer_model_name="medviewer",
                software_versions=medviewer.__version__,
                device_serial_number="0",
                content_label=f"{self.which.upper()}_MASKS",
                content_description=f"{kind} masks exported by medviewer"[:64],
                content_creator_name=creator,
                series_description=f"SEG {src.get('SeriesDescription', '')}".strip()[:64],
                content_date=created.date(),
                content_time=created.time(),
                omit_empty_frames=True,
            )
        except Exception as e:  # highdicom's many checks on odd sources; the reason is kept
            raise Unsupported(f"highdicom could not build a SEG of them ({e})") from e
        _fix_unplaced(seg, src)
        return seg


def _complete(ds: Dataset) -> Dataset:
    """The header with what highdicom needs to copy present (empty when unknown)."""
    for keyword in PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if ds.PatientSex not in ("M", "F", "O", ""):
        ds.PatientSex = ""  # a non-standard value would make highdicom refuse the SEG
    return ds


def _placed(ds: Dataset) -> bool:
    return hd.spatial.get_image_coordinate_system(ds) is not None


def _stack_key(ds: Dataset) -> tuple:
    """One SEG holds images of one size, frame of reference and orientation."""
    orientation = ds.get("ImageOrientationPatient") or ()
    return (
        int(ds.Rows),
        int(ds.Columns),
        str(ds.get("FrameOfReferenceUID", "")),
        tuple(round(float(v), 4) for v in orientation),
    )


def _person(author: str) -> str:
    """A workspace user name as a DICOM PN: a bare name is the family name ("alice^"), which
    dciodvfy and highdicom otherwise flag as the retired single-component form."""
    name = author.replace("\\", " ").replace("=", " ").strip()[:63]
    return name if "^" in name else f"{name}^"


def _algorithm(revs: list[Revision]) -> hd.AlgorithmIdentificationSequence:
    names = sorted({r.model_name or "unknown model" for r in revs})
    versions = sorted({r.model_version or "unknown" for r in revs})
    return hd.AlgorithmIdentificationSequence(
        name=", ".join(names)[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=", ".join(versions)[:64],
    )


def _fix_unplaced(seg: hd.seg.Segmentation, src: Dataset) -> None:
    """Source images without patient coordinates: what highdicom leaves for us to fix."""
    if _placed(src):
        return
    # General Image module: Patient Orientation is type 2C when there is no plane position.
    seg.PatientOrientation = src.get("PatientOrientation", "")
    # Pixel Measures copied from a 2D source lack Slice Thickness, which both dciodvfy and
    # highdicom's reader require; spacing stays available from the referenced source image.
    shared = seg.SharedFunctionalGroupsSequence[0]
    measures = shared.get("PixelMeasuresSequence")
    if measures and "SliceThickness" not in measures[0]:
        del shared.PixelMeasuresSequence


def _check_read_back(path: Path, uids: list[str], planes: np.ndarray, *, by_frame: bool) -> None:
    """Read the written file with highdicom and compare label maps to what was exported."""
    try:
        seg = hd.seg.segread(path)
        if by_frame:
            got = seg.get_pixels_by_source_frame(
                uids[0],
                list(range(1, planes.shape[0] + 1)),
                combine_segments=True,
                assert_missing_frames_are_empty=True,
            )
        else:
            got = seg.get_pixels_by_source_instance(
                uids,
                combine_segments=True,
                assert_missing_frames_are_empty=True,
            )
    except Exception as e:  # any failure to read back means the SEG is not to be trusted
        raise Unsupported(f"highdicom could not read their SEG back ({e})") from e
    if got.shape != planes.shape or not np.array_equal(got, planes):
        raise Unsupported("their SEG did not read back to the same label maps")
