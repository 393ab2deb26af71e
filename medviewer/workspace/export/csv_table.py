"""CSV export: one row per image with its review state, labels, chosen mask's class counts and
its volume's class volumes (mL); and a table of the images' ruler and ROI measurements."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medviewer.atomic import atomic_write_text
from medviewer.imaging.geometry import stack
from medviewer.imaging.measure import volumes_of_counts
from medviewer.imaging.reslice import GeometryError, VolumeAxes
from medviewer.workspace import measurements
from medviewer.workspace.classes import ClassResolver
from medviewer.workspace.export import (
    ExportError,
    ExportReport,
    chosen_mask,
    describe_image,
    listing,
)
from medviewer.workspace.revisions import mask_summary
from medviewer.workspace.volumes import series_volumes

if TYPE_CHECKING:
    from medviewer.deid.profile import Anonymiser
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import Workspace

COLUMNS = (
    "image_id",
    "path",
    "frame_number",  # 1-based, as DICOM numbers frames
    "patient_id",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "modality",
    "status",
    "status_author",
    "status_time",
    "labels",  # ticked label names, "; "-separated
    "mask_revision",
    "mask_source",
    "mask_author",
    "model_name",
    "model_version",
    "mask_time",
    "confirmed_by",  # "final" only: the mask's author, or the approver of an unedited proposal
    "confirmed_time",
)
PIXELS = "pixels_"  # then one column per class name, in order of first appearance
# The class volumes of the volume the image belongs to (its series' slices), from each
# slice's chosen mask; empty for an image that is not part of a volume.
VOLUME = "volume_ml_"
MEASUREMENT_COLUMNS = (
    "image_id",
    "path",
    "patient_id",
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "measurement",  # 1-based, per image
    "kind",  # ruler or ellipse
    "quantity",  # length; mean, sd, min, max, area
    "value",
    "unit",  # mm, mm2, px, HU, or empty: the modality's own values
    "note",
    "author",
    "time",
)
# A cell a spreadsheet would run as a formula (OWASP, CSV injection); text only.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def cell(value: Any) -> Any:
    """A text value a spreadsheet shows as text: one starting like a formula gets a leading
    single quote (`=1+1` -> `'=1+1`). Patient IDs, author and label names come from files
    and users, so an export must never carry a formula. Numbers, and text that is a plain
    number such as "-12", stay as they are: they compute nothing."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not NUMBER.fullmatch(value):
        return "'" + value
    return value


def iso_time(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat("T", "seconds")


def pixel_counts(ws: Workspace, rev: Revision) -> dict[int, int]:
    """Class value -> pixels, from the summary stored with the revision (no blob read)."""
    counts = rev.summary.get("pixels")
    if not isinstance(counts, dict):
        counts = mask_summary(ws.revisions.read_mask(rev))
    return {int(k): int(v) for k, v in counts.items()}


def export_csv(
    ws: Workspace,
    out_dir: Path,
    which: str,
    report: ExportReport,
    *,
    anonymiser: Anonymiser | None = None,
) -> Path:
    """With an `anonymiser`, patient IDs are the pseudonyms, UIDs the replacements, and the
    path (whose folders often name the patient) is left empty."""
    resolver = ClassResolver(ws)
    records: list[dict[str, Any]] = []
    class_columns: dict[str, None] = {}  # an ordered set
    volume_columns: dict[str, None] = {}
    unnamed: list[str] = []
    counts_of: dict[int, dict[int, int]] = {}  # image -> its chosen mask's pixel counts
    for row in ws.images():
        inst = ws.frame_ref(row.id).instance
        dicom = inst.kind == "dicom"  # raster files have made-up UIDs; leave those empty
        labels = chosen_mask(ws, row.id, which, "labels")
        record: dict[str, Any] = {
            "image_id": row.id,
            "path": row.path,
            "frame_number": row.frame + 1,
            "patient_id": row.patient_id,
            "study_uid": row.study_uid if dicom else "",
            "series_uid": row.series_uid if dicom else "",
            "sop_instance_uid": inst.sop_instance_uid if dicom else "",
            "modality": row.modality,
            "status": row.status,
            "status_author": row.status_author or "",
            "status_time": iso_time(row.status_time),
            "labels": "; ".join(k for k, v in labels.labels.items() if v) if labels else "",
        }
        confirmed = ws.revisions.confirmed(row.id) if which == "final" else None
        rev = chosen_mask(ws, row.id, which) if confirmed is None else confirmed.revision
        if rev is None:
            report.skipped += 1
        else:
            report.exported += 1
            record.update(
                mask_revision=rev.id,
                mask_source=rev.source,
                mask_author=rev.author,
                model_name=rev.model_name or "",
                model_version=rev.model_version or "",
                mask_time=iso_time(rev.created_at),
                confirmed_by=confirmed.by if confirmed else "",
                confirmed_time=iso_time(confirmed.at) if confirmed else "",
            )
            counts = counts_of[row.id] = pixel_counts(ws, rev)
            palette = resolver.palette(rev)
            if palette.model is None:
                unnamed.append(describe_image(row, inst))
            palette = palette.extended(max(counts, default=0) + 1)
            for value, name in enumerate(palette.names):
                class_columns[PIXELS + name] = None
                record[PIXELS + name] = counts.get(value, 0)
            record["_names"] = palette.names
        records.append(record)
    _add_volumes(ws, records, counts_of, volume_columns)
    for record in records:
        record.pop("_names", None)
        if anonymiser is not None:
            _anonymise(record, anonymiser)
    path = out_dir / f"images_{which}.csv"
    _write(path, [*COLUMNS, *class_columns, *volume_columns], records, report)
    if report.skipped:
        report.notes.append(
            f"{path.name}: {report.skipped} image(s) have no {which} mask; "
            "their mask and pixel columns are empty."
        )
    if unnamed:
        report.notes.append(
            f"{path.name}: the masks of {len(unnamed)} image(s) come from no registered model, "
            f"so their classes are counted as 'Class N': {listing(unnamed)}."
        )
    _export_measurements(ws, out_dir, report, anonymiser)
    return path


def _add_volumes(
    ws: Workspace,
    records: list[dict[str, Any]],
    counts_of: dict[int, dict[int, int]],
    columns: dict[str, None],
) -> None:
    """Each image of a volume gets its volume's class volumes (mL, `measure`'s units): the
    slices' chosen masks' pixel counts summed, times the voxel volume."""
    by_id = {r["image_id"]: r for r in records}
    for volume in series_volumes(ws)[0]:
        if len(volume) < 2:
            continue
        try:
            axes = VolumeAxes.from_stack(stack([s.plane for s in volume]))
        except (GeometryError, ValueError):
            continue  # no consistent geometry: no volume to state
        total: dict[int, int] = {}
        for s in volume:
            for value, n in counts_of.get(s.row.id, {}).items():
                total[value] = total.get(value, 0) + n
        volumes = volumes_of_counts(total, axes)
        for s in volume:
            record = by_id[s.row.id]
            names = record.get("_names") or []
            for value, ml in volumes.items():
                name = names[value] if value < len(names) else f"Class {value}"
                columns[VOLUME + name] = None
                record[VOLUME + name] = round(ml, 4)


def _export_measurements(
    ws: Workspace, out_dir: Path, report: ExportReport, anonymiser: Anonymiser | None
) -> Path | None:
    """measurements.csv, when any image has measurements: per image, per measurement, per
    quantity, its value and unit."""
    rows: list[dict[str, Any]] = []
    for image in ws.images():
        rev, found, problems = measurements.latest(ws, image.id)
        report.notes.extend(f"measurements.csv: {p}" for p in problems)
        if rev is None or not found:
            continue
        inst = ws.frame_ref(image.id).instance
        dicom = inst.kind == "dicom"
        for i, m in enumerate(found, start=1):
            for r in m.readings:
                row = {
                    "image_id": image.id,
                    "path": image.path,
                    "patient_id": image.patient_id,
                    "study_uid": image.study_uid if dicom else "",
                    "series_uid": image.series_uid if dicom else "",
                    "sop_instance_uid": inst.sop_instance_uid if dicom else "",
                    "measurement": i,
                    "kind": m.kind,
                    "quantity": r.quantity,
                    "value": round(r.value, 4),
                    "unit": r.unit,
                    "note": m.note,
                    "author": rev.author,
                    "time": iso_time(rev.created_at),
                }
                if anonymiser is not None:
                    _anonymise(row, anonymiser)
                rows.append(row)
    if not rows:
        return None  # nobody measured anything: no empty table
    path = out_dir / "measurements.csv"
    _write(path, MEASUREMENT_COLUMNS, rows, report)
    return path


def _write(
    path: Path, columns: Sequence[str], rows: list[dict[str, Any]], report: ExportReport
) -> None:
    """One CSV table, every cell through `cell`, written atomically and listed in the report."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns, restval="")
    writer.writeheader()
    writer.writerows({k: cell(v) for k, v in r.items()} for r in rows)
    try:
        atomic_write_text(path, text.getvalue())
    except OSError as e:
        raise ExportError(f"{path}: cannot write: {e.strerror}") from e
    report.files.append(path)


def _anonymise(record: dict[str, Any], anonymiser: Anonymiser) -> None:
    record["patient_id"] = anonymiser.mapping.patient(record["patient_id"] or "").pseudonym
    record["path"] = ""
    for key in ("study_uid", "series_uid", "sop_instance_uid"):
        if record[key]:
            record[key] = anonymiser.mapping.uid(record[key])
