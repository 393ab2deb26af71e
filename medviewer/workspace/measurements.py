"""The ruler and ROI measurements kept with an image: stored as the image's `measurements`
revisions (append-only; the latest is the list the image shows), each a JSON record of an
`imaging.measure.Measurement`. A record that cannot be read (written by a newer version, or
damaged) is left out and named, never guessed at."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from medviewer.imaging.geometry import stack
from medviewer.imaging.measure import Measurement, Reading, volumes_of_counts
from medviewer.imaging.reslice import GeometryError, VolumeAxes
from medviewer.workspace.errors import WorkspaceError
from medviewer.workspace.revisions import mask_summary
from medviewer.workspace.volumes import volume_holding

if TYPE_CHECKING:
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import Workspace

KINDS = ("ruler", "ellipse")


class BadMeasurement(WorkspaceError):
    """A stored measurement record that cannot be read: names the revision and why."""


def to_record(m: Measurement) -> dict[str, Any]:
    return {
        "kind": m.kind,
        "points": [float(v) for v in m.points],
        "readings": [
            {"quantity": r.quantity, "value": r.value, "unit": r.unit} for r in m.readings
        ],
        "note": m.note,
    }


def from_record(record: Any, where: str = "measurement") -> Measurement:
    """The measurement of a stored record, or BadMeasurement saying what is wrong."""
    try:
        kind = record["kind"]
        points = tuple(float(v) for v in record["points"])
        readings = tuple(
            Reading(str(r["quantity"]), float(r["value"]), str(r["unit"]))
            for r in record["readings"]
        )
        note = str(record.get("note", ""))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadMeasurement(f"{where}: not a measurement record ({e!r})") from None
    if kind not in KINDS:
        raise BadMeasurement(f"{where}: unknown measurement kind {kind!r}; known: {KINDS}")
    if len(points) != 4 or not all(math.isfinite(v) for v in points):
        raise BadMeasurement(f"{where}: needs 4 finite points, got {record['points']!r}")
    if not readings or not all(math.isfinite(r.value) for r in readings):
        raise BadMeasurement(f"{where}: needs finite readings, got {record['readings']!r}")
    return Measurement(kind, points, readings, note)  # type: ignore[arg-type]


def of_revision(rev: Revision) -> tuple[list[Measurement], list[str]]:
    """The measurements of one `measurements` revision, and why any record was left out."""
    records = rev.payload.get("measurements", [])
    out: list[Measurement] = []
    problems: list[str] = []
    if not isinstance(records, list):
        return [], [f"revision {rev.id}: measurements are not a list"]
    for i, record in enumerate(records):
        try:
            out.append(from_record(record, f"revision {rev.id}, measurement {i + 1}"))
        except BadMeasurement as e:
            problems.append(str(e))
    return out, problems


def latest(ws: Workspace, image_id: int) -> tuple[Revision | None, list[Measurement], list[str]]:
    """The image's current measurements (its latest `measurements` revision) and problems."""
    rev = ws.revisions.latest(image_id, "measurements")
    if rev is None:
        return None, [], []
    found, problems = of_revision(rev)
    return rev, found, problems


def save(ws: Workspace, image_id: int, measurements: list[Measurement], author: str) -> Revision:
    """The image's measurements as they stand now, as a new revision."""
    return ws.revisions.save_measurements(
        image_id, [to_record(m) for m in measurements], author=author
    )


def series_class_volumes(ws: Workspace, image_id: int) -> dict[int, float] | None:
    """Class -> mL over the volume holding the image, from each slice's shown mask (its
    latest, as `review_state.load_review` shows it) by the pixel counts stored with it; None
    when the image is no volume (a single slice, or slices that do not stack)."""
    volume = volume_holding(ws, image_id)
    if len(volume) < 2:
        return None
    try:
        axes = VolumeAxes.from_stack(stack([s.plane for s in volume]))
    except (GeometryError, ValueError):
        return None
    total: dict[int, int] = {}
    for s in volume:
        rev = ws.revisions.latest(s.row.id, "mask")
        pixels = rev.summary.get("pixels") if rev is not None else None
        if rev is not None and not isinstance(pixels, dict):
            pixels = mask_summary(ws.revisions.read_mask(rev))
        for value, n in (pixels or {}).items():
            total[int(value)] = total.get(int(value), 0) + int(n)
    return volumes_of_counts(total, axes)
