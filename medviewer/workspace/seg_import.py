"""DICOM SEG files become `import` revisions on the images they reference.

A SEG names its source images by SOP Instance UID (and frame, for a multi-frame source); each
referenced image gets one label map, empty where the SEG holds no frame for it (our exports
leave empty frames out, yet reference the image: segmented, nothing found). Segments become
class values by label (`segment_classes`). A file is all or nothing: every check runs before
the first revision is written, and a failure is one line naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
import pydicom

from medviewer.imaging.dicom import read_dataset_header
from medviewer.imaging.errors import UnreadableFile
from medviewer.workspace.errors import (
    MaskMismatch,
    SaveError,
    UnknownImage,
    UnmappedSegment,
    UnreadableSeg,
)
from medviewer.workspace.mask_results import MaskImportResult, revision_model
from medviewer.workspace.segment_classes import SegmentClasses

if TYPE_CHECKING:
    from medviewer.workspace.model_table import ModelVersion
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import Workspace

# Segmentation Storage and Label Map Segmentation Storage.
SEG_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"})
_FAILURES = (UnreadableSeg, UnknownImage, UnmappedSegment, MaskMismatch, SaveError)


@dataclass(frozen=True)
class _Source:
    """A workspace image a SEG references: one frame of one instance."""

    image_id: int
    sop_instance_uid: str
    frame: int  # 0-based
    frames: int  # of its instance
    rows: int
    columns: int
    path: str


def is_seg(path: Path) -> bool:
    """Whether the file's header says DICOM SEG; False for anything unreadable."""
    try:
        ds, _ = read_dataset_header(path)
    except (UnreadableFile, OSError):
        return False
    sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    return sop_class in SEG_SOP_CLASSES or ds.get("Modality") == "SEG"


def seg_files(folder: Path) -> list[Path]:
    """The SEG files under a folder (a given file is taken as one, whatever it holds: it is
    then reported, not passed over); other files are passed over."""
    if folder.is_file():
        return [folder]
    found = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() != ".png")
    return [p for p in found if not p.name.startswith(".") and is_seg(p)]


def import_segs(
    ws: Workspace, paths: Iterable[Path], *, author: str, model: ModelVersion | None = None
) -> list[MaskImportResult]:
    """Each SEG's masks as `import` revisions (one result per image), or one failed result
    naming the file and the reason. `author` stands where a SEG names no Content Creator."""
    classes = SegmentClasses.of_model(model) if model else SegmentClasses.of_workspace(ws)
    model_ref, num_classes = revision_model(model)
    results: list[MaskImportResult] = []
    for path in paths:
        try:
            results += _import_one(ws, path, author, classes, model_ref, num_classes)
        except _FAILURES as e:
            results.append(MaskImportResult.failed(path, e))
    return results


def _import_one(
    ws: Workspace,
    path: Path,
    author: str,
    classes: SegmentClasses,
    model_ref: tuple[str, str] | None,
    num_classes: int | None,
) -> list[MaskImportResult]:
    seg = read_seg(path)
    sources = _sources(ws, seg, path)
    values = {n: classes.value(n, _label(seg, n)) for n in seg.segment_numbers}
    masks = label_maps(seg, sources, values, path)
    who = _creator(seg) or author
    summary = {
        "seg": {
            "file": path.name,
            "sop_instance_uid": str(seg.SOPInstanceUID),
            "segments": {_label(seg, n): v for n, v in values.items()},
        }
    }
    results = []
    for source, mask in zip(sources, masks, strict=True):
        done = _imported_before(ws, source.image_id, str(seg.SOPInstanceUID))
        if done is not None:  # the same SEG again (a re-import, a PACS retrieve): no new revision
            results.append(MaskImportResult(path, source.image_id, done.id, already=True))
            continue
        rev = ws.revisions.save_mask(
            source.image_id,
            mask,
            source="import",
            author=who,
            model=model_ref,
            num_classes=num_classes,
            summary=summary,
        )
        results.append(MaskImportResult(path, source.image_id, rev.id))
    return results


def read_seg(path: Path) -> hd.seg.Segmentation:
    """The SEG, fully read (a truncated file fails here, not halfway through the import)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the source's odd values, not ours to report
            seg = hd.seg.segread(path)
            seg.segment_numbers  # noqa: B018 - parses the Segment Sequence now
    except OSError as e:
        raise UnreadableSeg(f"{path}: cannot read: {e.strerror or e}") from e
    except Exception as e:  # pydicom and highdicom raise many kinds on bad files
        raise UnreadableSeg(f"{path}: not a readable DICOM SEG ({_why(path, e)})") from e
    _check_length(seg, path)
    return seg


def _check_length(seg: hd.seg.Segmentation, path: Path) -> None:
    """Uncompressed pixel data shorter than its frames: a truncated file, said so up front
    (highdicom only fails at the first short frame, with a reshape error)."""
    if seg.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in seg:
        return
    bits = int(seg.Rows) * int(seg.Columns) * int(seg.BitsAllocated) * seg.number_of_frames
    have, need = len(seg.PixelData), (bits + 7) // 8
    if have < need:
        raise UnreadableSeg(
            f"{path}: not a readable DICOM SEG (truncated: {have} bytes of pixel data, its "
            f"{seg.number_of_frames} frame(s) of {seg.Columns}x{seg.Rows} need {need})"
        )


def _sources(ws: Workspace, seg: hd.seg.Segmentation, path: Path) -> list[_Source]:
    """Every image the SEG references, each one in the workspace, of the SEG's size."""
    uids = sorted({str(uid) for _, _, uid in seg.get_source_image_uids()})
    if not uids:
        raise UnreadableSeg(f"{path}: references no source images (none by SOP Instance UID)")
    sources: list[_Source] = []
    missing = []
    for uid in uids:
        rows = ws.db.execute(
            "SELECT id, frame, rows, columns, path FROM images WHERE sop_instance_uid = ?"
            " ORDER BY frame",
            (uid,),
        ).fetchall()
        if not rows:
            missing.append(uid)
        sources += [_Source(r[0], uid, r[1], len(rows), r[2], r[3], r[4]) for r in rows]
    if missing:
        raise UnknownImage(
            f"{path}: {len(missing)} of the {len(uids)} image(s) it references are not in the "
            f"workspace (first: SOP Instance UID {missing[0]}); import their series first"
        )
    for source in sources:
        if (source.rows, source.columns) != (int(seg.Rows), int(seg.Columns)):
            raise MaskMismatch(
                f"{path}: the SEG is {seg.Columns}x{seg.Rows}, its image {source.path} "
                f"is {source.columns}x{source.rows}"
            )
    return sources


def label_maps(
    seg: hd.seg.Segmentation, sources: list[_Source], values: dict[int, int], path: Path
) -> list[np.ndarray]:
    """One uint8 label map per source, segment pixels set to their class value."""
    numbers = list(values)
    if _moved_pixels(seg):
        raise UnreadableSeg(
            f"{path}: its frames say they do not keep their source images' pixel positions "
            "(Spatial Locations Preserved NO), so they cannot be laid on those images"
        )
    single = [s.sop_instance_uid for s in sources if s.frames == 1]
    by_uid: dict[str, np.ndarray] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if single:
                stack = seg.get_pixels_by_source_instance(
                    single,
                    segment_numbers=numbers,
                    assert_missing_frames_are_empty=True,
                    ignore_spatial_locations=True,  # absent in dcmqi's SEGs; NO refused above
                )
                by_uid.update(zip(single, stack, strict=True))
            multi = {s.sop_instance_uid: s.frames for s in sources if s.frames > 1}
            for uid, frames in multi.items():
                stack = seg.get_pixels_by_source_frame(
                    uid,
                    list(range(1, frames + 1)),
                    segment_numbers=numbers,
                    assert_missing_frames_are_empty=True,
                    ignore_spatial_locations=True,
                )
                for frame in range(frames):
                    by_uid[f"{uid}#{frame}"] = stack[frame]
    except Exception as e:  # highdicom says why (no references by frame, ...)
        raise UnreadableSeg(
            f"{path}: its frames cannot be matched to the images they segment ({_one_line(e)})"
        ) from e
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    maps = []
    for source in sources:
        planes = by_uid[_key(source)]
        present = planes >= 0.5 if fractional else planes > 0
        maps.append(_combine(path, source, present, [values[n] for n in numbers]))
    return maps


def _moved_pixels(seg: hd.seg.Segmentation) -> bool:
    """Whether a source image reference says Spatial Locations Preserved NO. Absent (as in
    dcmqi's SEGs) counts as preserved: the frame has its source's size, checked before."""
    groups = list(seg.get("PerFrameFunctionalGroupsSequence") or [])
    groups += list(seg.get("SharedFunctionalGroupsSequence") or [])
    for group in groups:
        for derivation in group.get("DerivationImageSequence") or []:
            for source in derivation.get("SourceImageSequence") or []:
                if str(source.get("SpatialLocationsPreserved", "")).upper() == "NO":
                    return True
    return False


def _combine(path: Path, source: _Source, present: np.ndarray, classes: list[int]) -> np.ndarray:
    """(rows, columns, segments) booleans -> label map; segments of different classes must
    not overlap, a label map holds one class per pixel."""
    mask = np.zeros(present.shape[:2], np.uint8)
    for index, value in enumerate(classes):
        if value == 0:
            continue
        layer = present[..., index]
        clash = layer & (mask != 0) & (mask != value)
        if clash.any():
            other = int(mask[clash][0])
            raise UnreadableSeg(
                f"{path}: classes {other} and {value} overlap in {int(clash.sum())} "
                f"pixel(s) of {source.path}; a label map holds one class per pixel"
            )
        mask[layer] = value
    return mask


def _imported_before(ws: Workspace, image_id: int, seg_uid: str) -> Revision | None:
    """The image's revision imported from the SEG of this SOP Instance UID, if any."""
    for rev in ws.revisions.history(image_id):
        if rev.source == "import" and rev.summary.get("seg", {}).get("sop_instance_uid") == seg_uid:
            return rev
    return None


def _key(source: _Source) -> str:
    """How label_maps files a source's planes: a multi-frame source's frames one by one."""
    uid = source.sop_instance_uid
    return uid if source.frames == 1 else f"{uid}#{source.frame}"


def _label(seg: hd.seg.Segmentation, number: int) -> str:
    return str(seg.get_segment_description(number).segment_label)


def _creator(seg: hd.seg.Segmentation) -> str | None:
    """Content Creator's Name as a workspace user name: our exports write "alice^" for alice."""
    name = str(seg.get("ContentCreatorName") or "").strip().rstrip("^").strip()
    return name or None


def _why(path: Path, e: Exception) -> str:
    """highdicom's reason, or the one a user can act on: it reads little endian only."""
    try:
        syntax = pydicom.filereader.read_file_meta_info(path).get("TransferSyntaxUID")
    except Exception:  # noqa: BLE001 - no readable meta: highdicom's reason stands
        syntax = None
    if syntax == pydicom.uid.ExplicitVRBigEndian:
        return "Explicit VR Big Endian, which highdicom cannot read; convert it to little endian"
    return _one_line(e)


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
