"""Export reviewed masks: DICOM SEG, PNG label maps (optionally with overlays), NIfTI label
volumes or a CSV table.

`export_workspace` picks one mask revision per image ("final": the confirmed truth, as
`Revisions.confirmed` defines it; "original": the latest AI one); images without one are
skipped and counted. A mask whose stored file is missing or damaged costs only its own image:
the rest is exported and the image is listed in `ExportReport.failed` with the reason. The
format modules are imported on use so that a PNG or CSV export never loads highdicom or
nibabel.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from medviewer.workspace.errors import CorruptBlob, WorkspaceError

if TYPE_CHECKING:
    import numpy as np

    from medviewer.deid.profile import Anonymiser
    from medviewer.imaging import Instance
    from medviewer.workspace.revisions import Revision
    from medviewer.workspace.store import ImageRow, Workspace

FORMATS = ("dicom-seg", "png", "nifti", "csv")
WHICH = ("final", "original")


class ExportError(WorkspaceError):
    """An export could not write its output (the message names the file and why)."""


@dataclass
class ExportReport:
    fmt: str
    which: str
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exported: int = 0  # images whose mask went into the output
    skipped: int = 0  # images without a mask revision of the chosen kind
    failed: list[str] = field(default_factory=list)  # "image N (file): why", mask unreadable


def export_workspace(
    ws: Workspace,
    out_dir: Path | str,
    fmt: str,
    which: str = "final",
    *,
    overlay: bool = False,
    anonymiser: Anonymiser | None = None,
    image_ids: Collection[int] | None = None,
) -> ExportReport:
    """Write every image's chosen mask to `out_dir` as `fmt` (see FORMATS); with an
    `anonymiser`, de-identified (`export.anonymised`), its mapping saved before and after.
    `image_ids` (dicom-seg only, for a PACS send) limits it to those images."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    if which not in WHICH:
        raise ValueError(f"unknown mask choice {which!r}; valid: {', '.join(WHICH)}")
    if image_ids is not None and fmt != "dicom-seg":
        raise ValueError(f"an image subset is for the dicom-seg export, not {fmt}")
    out = Path(out_dir).expanduser()
    if anonymiser is not None:
        from medviewer.workspace.export.anonymised import prepare

        prepare(ws, out, fmt, anonymiser)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{out}: cannot create the export folder: {e.strerror}") from e
    report = ExportReport(fmt, which, out)
    if fmt == "dicom-seg":
        from medviewer.workspace.export.dicom_seg import export_dicom_seg

        export_dicom_seg(ws, out, which, report, anonymiser=anonymiser, image_ids=image_ids)
    elif fmt == "png":
        from medviewer.workspace.export.png import export_png

        export_png(ws, out, which, report, overlay=overlay, anonymiser=anonymiser)
    elif fmt == "nifti":
        from medviewer.workspace.export.nifti import export_nifti

        export_nifti(ws, out, which, report, anonymiser=anonymiser)
    else:
        from medviewer.workspace.export.csv_table import export_csv

        export_csv(ws, out, which, report, anonymiser=anonymiser)
    if anonymiser is not None:
        anonymiser.mapping.save()  # with the UIDs replaced during the export
        report.notes.append(
            f"De-identified; the re-identification mapping is {anonymiser.mapping.path} "
            "(keep it at the site)."
        )
    if report.skipped and fmt != "csv":  # the CSV keeps a row for them and says so itself
        report.notes.append(
            f"{report.skipped} image(s) have no {which} mask and were not exported."
        )
    return report


def chosen_mask(ws: Workspace, image_id: int, which: str, kind: str = "mask") -> Revision | None:
    if which == "final":
        confirmed = ws.revisions.confirmed(image_id, kind)
        return confirmed.revision if confirmed else None
    return ws.revisions.original(image_id, kind)


def read_chosen(
    ws: Workspace, rev: Revision, row: ImageRow, report: ExportReport, inst: Instance | None = None
) -> np.ndarray | None:
    """The mask of `rev`, or None when its stored file is missing or damaged: then the image
    is listed in `report.failed` (once) and the export goes on with the others."""
    try:
        return ws.revisions.read_mask(rev)
    except CorruptBlob as e:
        entry = f"{describe_image(row, inst)}: {e}"
        if entry not in report.failed:
            report.failed.append(entry)
        return None


# -- names and notes -------------------------------------------------------------------


def safe_name(text: str, limit: int = 120) -> str:
    """Letters, digits, '.', '_' and '-' only, so the name is valid on every file system."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return name[:limit].rstrip("._-") or "image"


def image_stem(row: ImageRow, inst: Instance) -> str:
    """Series description and SOP Instance UID (file name for raster files; for a NIfTI
    volume its description names the file) and frame."""
    if inst.kind == "raster":
        stem = f"{row.series_description}_{inst.path.stem}"
    elif inst.kind == "nifti":
        stem = row.series_description
    else:
        stem = f"{row.series_description or row.modality or 'series'}_{inst.sop_instance_uid}"
    if inst.frames > 1:
        stem += f"_f{row.frame + 1:04d}"
    return safe_name(stem)


class UniqueNames:
    """File names unique within one export: a clash gets the image id appended."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def claim(self, name: str, suffix: str, image_id: int) -> str:
        candidate = name + suffix
        if candidate.lower() in self._used:  # case-insensitive file systems
            candidate = f"{name}_{image_id}{suffix}"
        self._used.add(candidate.lower())
        return candidate


def describe_image(row: ImageRow, inst: Instance | None = None) -> str:
    multi = row.frame > 0 or (inst is not None and inst.frames > 1)
    frame = f" frame {row.frame + 1}" if multi else ""
    return f"image {row.id} ({Path(row.path).name}{frame})"


def listing(items: Iterable[str], limit: int = 5) -> str:
    """'a, b, c' or 'a, b, c, d, e and 7 more'."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
