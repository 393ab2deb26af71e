"""Studies between a PACS and a workspace, over any `PacsConnection`.

`retrieve_into` writes a study (or one series) into the workspace's PACS cache folder and imports
it series by series (`Workspace.import_paths`, the owner of which image a file is), so the
worklist fills as series arrive; a cancel or a node that stops answering keeps and imports what
arrived. `send_results` exports the confirmed masks (`Revisions.confirmed`, through
`export_workspace`) of chosen images as DICOM SEG into a temporary folder, de-identified with
copies of their sources on request (`medviewer.deid`), and stores them on the node.
"""

from __future__ import annotations

import re
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from medviewer.pacs.errors import PacsError
from medviewer.pacs.progress import Cancelled, Progress, Transfer
from medviewer.workspace.mask_results import MaskImportResult
from medviewer.workspace.store import ImageQuery

if TYPE_CHECKING:
    from medviewer.deid.profile import Anonymiser
    from medviewer.pacs.remote import PacsConnection
    from medviewer.workspace.store import Workspace

CACHE = "pacs"  # WORKSPACE/pacs/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
_UID = re.compile(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*")


@dataclass
class Retrieved:
    transfer: Transfer  # what arrived / failed
    folder: Path  # the workspace's PACS cache folder for this study
    added: int  # new images in the workspace
    already: int  # images it already had
    cancelled: bool = False  # the user cancelled; what had arrived is imported
    masks: list[MaskImportResult] = field(default_factory=list)  # from SEGs in the study


@dataclass
class Sent:
    transfer: Transfer  # what was sent (files, sop_uids) / failed
    image_ids: list[int]  # the images whose results went
    notes: list[str] = field(default_factory=list)  # export notes
    failed: list[str] = field(default_factory=list)  # images not exported or not sent, and why


def cache_folder(ws: Workspace, study_uid: str) -> Path:
    """Where a retrieved study lies in the workspace (a UID names the folder: digits and dots)."""
    if not _UID.fullmatch(study_uid or ""):
        raise PacsError(f"Study Instance UID {study_uid!r} is not a DICOM UID")
    return ws.root / CACHE / study_uid


def retrieve_into(
    ws: Workspace,
    conn: PacsConnection,
    study_uid: str,
    series_uid: str | None = None,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    on_imported: Callable[[int], None] | None = None,
) -> Retrieved:
    """Retrieve series by series into `cache_folder` and import each as it arrives
    (`on_imported(new images)` after each). A cancel returns with `cancelled` set, what arrived
    imported. A PacsError before anything arrived is raised; after, it ends the retrieve with
    the reason in `transfer.failed`, what arrived imported."""
    folder = cache_folder(ws, study_uid)
    if series_uid is None:
        plan = [(s.series_uid, s.instances) for s in conn.find_series(study_uid)]
        plan = [(uid, n) for uid, n in plan if n != 0]
        if not plan:
            raise PacsError(f"PACS node {conn.node.name}: no series in study {study_uid}")
    else:
        plan = [(series_uid, None)]
    counts = [n for _, n in plan]
    total = sum(n for n in counts if n is not None) if None not in counts else None
    result = Retrieved(Transfer(), folder, 0, 0)
    base, stopped = 0, False
    for series, count in plan:
        series_folder = folder / series
        before = _files(series_folder)
        step = progress if len(plan) == 1 else _offset(progress, base, total)
        try:
            got = conn.retrieve(folder, study_uid, series, progress=step, cancel=cancel)
        except Cancelled:
            result.cancelled = True
            got = Transfer(files=_arrived(series_folder, before))
        except PacsError as e:
            arrived = _arrived(series_folder, before)
            if not arrived and not result.transfer.files:
                raise
            got, stopped = Transfer(files=arrived, failed=[str(e)]), True
        _merge(result.transfer, got)
        if got.files:
            imported = ws.import_paths([series_folder])
            result.added += imported.added
            result.already += imported.already
            if on_imported is not None:
                on_imported(imported.added)
        if result.cancelled or stopped:
            break
        base += count if count is not None else len(got.files) + len(got.failed)
    result.masks = _import_segs(ws, conn, result.transfer.files)
    return result


def _import_segs(ws: Workspace, conn: PacsConnection, files: list[Path]) -> list[MaskImportResult]:
    """The retrieved SEGs' masks as `import` revisions on their source images, once every
    series (their sources among them) is imported; a SEG retrieved again adds nothing."""
    from medviewer.workspace.seg_import import import_segs, is_seg

    segs = [f for f in files if is_seg(f)]
    return import_segs(ws, segs, author=f"PACS {conn.node.name}") if segs else []


def _offset(progress: Progress | None, base: int, total: int | None) -> Progress | None:
    """A series' progress as part of the study's."""
    if progress is None:
        return None

    def step(done: int, _of: int | None) -> None:
        progress(base + done, total)

    return step


def _files(folder: Path) -> dict[Path, int]:
    """The DICOM files in a series folder, with their inodes (a file written again is a new
    inode: `medviewer.atomic` renames a new file over it)."""
    return {p: p.stat().st_ino for p in folder.glob("*.dcm")} if folder.is_dir() else {}


def _arrived(folder: Path, before: dict[Path, int]) -> list[Path]:
    return sorted(p for p, inode in _files(folder).items() if before.get(p) != inode)


def _merge(into: Transfer, got: Transfer) -> None:
    into.files += got.files
    into.failed += got.failed
    into.sop_uids += got.sop_uids
    into.notes += got.notes


def approved_images(ws: Workspace) -> list[int]:
    """Approved images that have a confirmed mask (`Revisions.confirmed`): `send --approved`."""
    rows = ws.images(ImageQuery(status=["approved"]))
    return [r.id for r in rows if ws.revisions.confirmed(r.id) is not None]


def send_results(
    ws: Workspace,
    conn: PacsConnection,
    image_ids: Sequence[int],
    *,
    anonymiser: Anonymiser | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Sent:
    """Export the images' confirmed masks as DICOM SEG (with an anonymiser: de-identified,
    with de-identified copies of their sources) and store them on the node. An image without
    a confirmed mask, one the export could not write as SEG, or whose SEG the node refused is
    in `failed`; a node that cannot be reached is a PacsError; a cancel raises Cancelled."""
    from medviewer.workspace.export import describe_image, export_workspace

    ids = list(dict.fromkeys(image_ids))
    rows = {i: ws.image(i) for i in ids}  # an unknown id fails before anything is sent
    failed = [
        f"{describe_image(rows[i])}: no confirmed mask to send"
        for i in ids
        if ws.revisions.confirmed(i) is None
    ]
    masked = [i for i in ids if ws.revisions.confirmed(i) is not None]
    if not masked:
        return Sent(Transfer(), [], [], failed)
    with tempfile.TemporaryDirectory(prefix="medviewer-send-") as tmp:
        report = export_workspace(
            ws, Path(tmp), "dicom-seg", "final", anonymiser=anonymiser, image_ids=masked
        )
        failed += report.failed
        segs, sources = _dicom_files(report.files)
        files = sources + list(segs)  # the sources first: a SEG then references what is there
        transfer = conn.store(files, progress=progress, cancel=cancel) if files else Transfer()
        referenced = {uid for seg in transfer.files if seg in segs for uid in segs[seg]}
    sent = []
    for i in masked:
        uid = ws.frame_ref(i).instance.sop_instance_uid
        if anonymiser is not None:
            uid = anonymiser.mapping.uid(uid)
        if uid in referenced:
            sent.append(i)
        elif not any(f.startswith(describe_image(rows[i])) for f in failed):
            why = "the node refused its SEG" if transfer.failed else "no DICOM SEG of it was made"
            failed.append(f"{describe_image(rows[i])}: not sent: {why} (see the notes)")
    return Sent(transfer, sent, report.notes, failed)


def _dicom_files(files: list[Path]) -> tuple[dict[Path, set[str]], list[Path]]:
    """The export's SEGs (each with the SOP Instance UIDs it references) and its other DICOM
    files (de-identified source copies); PNG fallbacks are not sent."""
    segs: dict[Path, set[str]] = {}
    others: list[Path] = []
    for path in files:
        if path.suffix.lower() != ".dcm":
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.get("Modality") == "SEG":
            segs[path] = {
                str(inst.ReferencedSOPInstanceUID)
                for series in ds.get("ReferencedSeriesSequence", [])
                for inst in series.get("ReferencedInstanceSequence", [])
            }
        else:
            others.append(path)
    return segs, others
