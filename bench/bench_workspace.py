"""The workspace: open, list and filter a 10,000-image worklist; save one 2048x2048 mask revision.

The worklist is a catalog built in memory (no image files; the paths need not exist), imported
with `Workspace.import_catalog`: 95 CT studies of 512x512 images and 5 tomosynthesis studies of
2048x2048 images. About half of the images get an AI revision with a finding, a probability and
an uncertainty (a mask blob on CT, a per-image score on tomosynthesis), and a few hundred get a
human review status, so the filter has something to do. Baselines: a plain `sqlite3` read of
the same image rows (the floor) and `cv2.imwrite` / `np.save` of the same mask (no fsync, no
database).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
from harness import Row, best_of
from pydicom.uid import generate_uid

from medviewer.imaging import Catalog, Instance, Patient, Series, Study
from medviewer.workspace import ImageQuery, ImageRow, Workspace
from medviewer.workspace.store import DB_NAME

NAME = "workspace"
PATIENTS, QUICK_PATIENTS = 100, 20  # x 1 study x 2 series x 50 images: 10,000 or 2,000 images
SERIES_PER_STUDY, IMAGES_PER_SERIES = 2, 50
LARGE_EVERY = 20  # every 20th patient has a 2048x2048 tomosynthesis study, the others CT
REPEAT, QUICK_REPEAT = 5, 2  # open + list + filter
SAVE_REPEAT, QUICK_SAVE_REPEAT = 10, 3  # one mask save each
LIST_TARGET = 1.0  # seconds
SAVE_TARGET = 0.100  # seconds
MODEL = ("chest-lesion-seg", "2.1.0")
MODEL_MG = ("mammo-triage", "1.4.2")
FILTER = ImageQuery(status=["unreviewed"], ai_finding=True, order="uncertainty", descending=True)

FIRST_NAMES = ("ANNA", "BERND", "CLARA", "DAVID", "EMMA", "FELIX", "GRETA", "HANS", "IDA", "JONAS")
LAST_NAMES = ("MUELLER", "SCHMIDT", "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER", "BECKER")


def _uid(*parts: object) -> str:
    """A valid DICOM UID, the same on every run for the same parts."""
    # generate_uid joins its sources without a separator, so join them here: (1, 12) != (11, 2).
    return generate_uid(entropy_srcs=["medviewer-bench/" + "/".join(map(str, parts))])


def fake_catalog(patients: int) -> Catalog:
    """patients x 1 study x 2 series x 50 images of header records; no file exists."""
    root = Path("/srv/pacs-export")
    catalog = Catalog()
    for p in range(patients):
        large = p % LARGE_EVERY == 0
        pid = f"PAT{p:05d}"
        name = f"{LAST_NAMES[p % len(LAST_NAMES)]}^{FIRST_NAMES[p % len(FIRST_NAMES)]}"
        study_uid = _uid(p)
        date = f"2026{1 + p % 12:02d}{1 + p % 28:02d}"
        modality, size = ("MG", 2048) if large else ("CT", 512)
        study_desc = "MAMMO TOMO BILATERAL" if large else "CT CHEST W/O CONTRAST"
        study = Study(study_uid, study_desc, date)
        for s in range(SERIES_PER_STUDY):
            series_uid = _uid(p, s)
            series_desc = ("R CC TOMO", "L CC TOMO")[s] if large else ("AXIAL 5mm", "LUNG 1mm")[s]
            series = Series(series_uid, series_desc, modality, s + 1, sorted_by="position")
            for k in range(IMAGES_PER_SERIES):
                sop = _uid(p, s, k)
                series.instances.append(
                    Instance(
                        path=root / pid / study_uid / series_uid / f"IM{k + 1:04d}.dcm",
                        kind="dicom",
                        sop_instance_uid=sop,
                        series_uid=series_uid,
                        study_uid=study_uid,
                        patient_id=pid,
                        rows=size,
                        columns=size,
                        bits_allocated=16,
                        bits_stored=12,
                        modality=modality,
                        patient_name=name,
                        study_description=study_desc,
                        study_date=date,
                        series_description=series_desc,
                        series_number=s + 1,
                        instance_number=k + 1,
                        transfer_syntax="1.2.840.10008.1.2.1",
                        transfer_syntax_name="Explicit VR Little Endian",
                        pixel_spacing=(0.1, 0.1) if large else (0.7, 0.7),
                        position=(-180.0, -180.0, -300.0 + 2.5 * k),
                        orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
                        pixel_offset=1380,
                        raw_dtype="<i2",
                    )
                )
            study.series.append(series)
        catalog.patients.append(Patient(pid, name, [study]))
    return catalog


def ai_mask(rows: int, columns: int, seed: int, rng: np.random.Generator) -> np.ndarray:
    """A small, distinct AI proposal: one lesion whose place depends on `seed`."""
    mask = np.zeros((rows, columns), np.uint8)
    centre = (columns // 4 + seed % (columns // 2), rows // 4 + (seed // 7) % (rows // 2))
    cv2.circle(mask, centre, int(rng.integers(3, rows // 16)), int(rng.integers(1, 4)), -1)
    return mask


def populate(ws: Workspace, patients: int) -> None:
    """Import the fake catalog; an AI revision on about half the images, a status on some."""
    # Setup only, to keep it short on a busy disk: no fsync, neither of the blobs nor of the
    # SQLite commits. The timed cases run the unpatched code on fresh connections, which
    # Workspace sets to synchronous=FULL.
    ws.db.execute("PRAGMA synchronous=OFF")
    with mock.patch.object(os, "fsync", lambda fd: None):
        _populate(ws, patients)
    if hasattr(os, "sync"):
        os.sync()  # no write-back of the setup's files while we time


def _populate(ws: Workspace, patients: int) -> None:
    result = ws.import_catalog(fake_catalog(patients))
    expected = patients * SERIES_PER_STUDY * IMAGES_PER_SERIES
    if result.added != expected:
        raise RuntimeError(f"{NAME}: import added {result.added} images, not {expected}")
    rng = np.random.default_rng(0)
    images = ws.images()
    for row in images:
        if rng.random() >= 0.5:
            continue
        p = float(rng.beta(0.6, 1.2))
        summary = {"finding": p >= 0.5, "probability": p, "uncertainty": 1.0 - abs(2.0 * p - 1.0)}
        if row.modality == "CT":  # a segmentation model
            mask = ai_mask(row.rows, row.columns, row.id, rng)
            ws.revisions.save_mask(
                row.id, mask, source="ai", author="ai", model=MODEL, summary=summary
            )
        else:  # a per-image score, as mammography models give; keeps the setup short
            ws.revisions.save_labels(
                row.id,
                {"suspicious": p >= 0.5},
                source="ai",
                author="ai",
                model=MODEL_MG,
                summary=summary,
            )
    reviewed = rng.choice(len(images), size=max(20, len(images) // 30), replace=False)
    for i in reviewed:
        status = str(rng.choice(["approved", "rejected", "in_progress"], p=[0.6, 0.1, 0.3]))
        ws.revisions.set_status(images[int(i)].id, status, author=f"dr.{LAST_NAMES[i % 8]}")


def open_list_filter(root: Path) -> tuple[list[ImageRow], list[ImageRow]]:
    ws = Workspace.open(root)
    try:
        return ws.images(), ws.images(FILTER)
    finally:
        ws.close()


def sqlite_floor(root: Path) -> list[tuple]:
    db = sqlite3.connect(root / DB_NAME)
    try:
        return db.execute("SELECT * FROM images").fetchall()
    finally:
        db.close()


def check_listing(everything: list[ImageRow], filtered: list[ImageRow], images: int) -> None:
    # Not an assert: it must hold under `python -O` too. A fast wrong answer is a failure.
    if len(everything) != images:
        raise RuntimeError(f"{NAME}: listed {len(everything)} images, not {images}")
    want = sorted(
        (r for r in everything if r.status == "unreviewed" and r.ai_finding is True),
        key=lambda r: (r.ai_uncertainty is None, -(r.ai_uncertainty or 0.0), r.id),
    )
    if [r.id for r in filtered] != [r.id for r in want] or not want:
        raise RuntimeError(
            f"{NAME}: the filter returned {len(filtered)} images, "
            f"a Python filter of the full list {len(want)} (or they differ in order)"
        )


def human_mask(size: int, step: int) -> np.ndarray:
    """A corrected 3-class mask: an organ, a polygon region and two lesions, moved by `step`."""
    mask = np.zeros((size, size), np.uint8)
    s = size / 2048
    d = step * 3
    cv2.ellipse(
        mask, (int(1000 * s) + d, int(1050 * s)), (int(620 * s), int(800 * s)), 10, 0, 360, 1, -1
    )
    polygon = np.array([[700, 600], [1150, 520], [1400, 900], [1200, 1350], [760, 1200]]) * s
    cv2.fillPoly(mask, [(polygon + d).astype(np.int32)], 2)
    cv2.circle(mask, (int(1300 * s) + d, int(1500 * s)), int(60 * s) + step, 3, -1)
    cv2.circle(mask, (int(820 * s), int(900 * s) + d), int(35 * s), 3, -1)
    return mask


def run(quick: bool = False) -> list[Row]:
    patients = QUICK_PATIENTS if quick else PATIENTS
    repeat = QUICK_REPEAT if quick else REPEAT
    save_repeat = QUICK_SAVE_REPEAT if quick else SAVE_REPEAT
    images = patients * SERIES_PER_STUDY * IMAGES_PER_SERIES
    with tempfile.TemporaryDirectory(prefix="medviewer-bench-") as tmp:
        root = Path(tmp) / "ws"
        start = time.perf_counter()
        with Workspace.open(root) as ws:
            populate(ws, patients)
        setup = time.perf_counter() - start

        everything, filtered = open_list_filter(root)  # also warms the page cache
        check_listing(everything, filtered, images)
        if len(sqlite_floor(root)) != images:
            raise RuntimeError(f"{NAME}: sqlite3 read a different number of image rows")
        listing = best_of(lambda: open_list_filter(root), repeat)
        floor = best_of(lambda: sqlite_floor(root), repeat)

        # -- one 2048x2048 mask revision, end to end -----------------------------------
        target = next(r for r in everything if r.rows == r.columns == 2048)
        masks = [human_mask(2048, step) for step in range(save_repeat + 1)]
        out = Path(tmp) / "baseline"
        out.mkdir()
        with Workspace.open(root) as ws:
            before = len(ws.revisions.history(target.id))
            saved = []
            pending = iter(masks)

            def save() -> None:
                mask = next(pending)
                saved.append(
                    ws.revisions.save_mask(target.id, mask, source="human", author="bench")
                )

            save()  # first call: lazy imports and connection set-up are not what we measure
            save_time = best_of(save, save_repeat)
            history = ws.revisions.history(target.id)
            blobs = {r.blob for r in saved}
            if len(history) != before + len(masks) or len(blobs) != len(masks):
                raise RuntimeError(f"{NAME}: {len(masks)} saves did not make distinct revisions")
            if not np.array_equal(ws.revisions.read_mask(saved[-1]), masks[-1]):
                raise RuntimeError(f"{NAME}: the saved mask reads back different")

        pending_png = iter(masks)
        png = best_of(lambda: cv2.imwrite(str(out / "mask.png"), next(pending_png)), save_repeat)
        pending_npy = iter(masks)
        npy = best_of(lambda: np.save(out / "mask.npy", next(pending_npy)), save_repeat)

    size_note = (
        f"{images:,} images ({patients} patients x 1 study x 2 series x 50); "
        f"{sum(r.ai_finding is not None for r in everything):,} with an AI result, "
        f"{sum(r.status != 'unreviewed' for r in everything)} reviewed; "
        f"the filter returns {len(filtered):,}; best of {repeat}; setup {setup:.0f} s"
    )
    mask_note = (
        f"classes 0-3, {np.count_nonzero(masks[-1]) / masks[-1].size:.0%} labelled; "
        f"best of {save_repeat}; baselines write the same masks without fsync"
    )
    return [
        Row(
            NAME,
            f"open + list + filter {images:,}",
            listing,
            "sqlite3 SELECT * FROM images (floor)",
            floor,
            f"< {LIST_TARGET:g} s",
            listing < LIST_TARGET,
            size_note,
        ),
        Row(
            NAME,
            "save 2048x2048 mask",
            save_time,
            "cv2.imwrite PNG",
            png,
            f"< {SAVE_TARGET * 1000:g} ms",
            save_time < SAVE_TARGET,
            mask_note,
        ),
        Row(NAME, "save 2048x2048 mask", save_time, "np.save", npy),
    ]
