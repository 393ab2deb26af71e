"""Measurements kept with the image's revisions (schema 4), and in the CSV export with the
class volumes of each image's volume."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from medviewer.imaging.display import Image
from medviewer.imaging.measure import Reading, roi_measurement, ruler_measurement
from medviewer.workspace import Workspace, measurements
from medviewer.workspace.export import export_workspace
from medviewer.workspace.export.csv_table import VOLUME
from medviewer.workspace.schema import SCHEMA_VERSION
from medviewer.workspace.store import DB_NAME

RULER = ruler_measurement((1.0, 2.0), (4.0, 6.0), (0.7, 0.8))


def test_saved_measurements_come_back_as_drawn(ws: Workspace) -> None:
    image = ws.images()[0]
    pixels = np.arange(24 * 32, dtype=np.int16).reshape(32, 24)
    roi = roi_measurement(Image(pixels, pixel_spacing=(0.7, 0.8)), (2, 2, 10, 8))
    measurements.save(ws, image.id, [RULER, roi], "alice")
    rev, found, problems = measurements.latest(ws, image.id)
    assert problems == [] and rev is not None and rev.author == "alice"
    assert found == [RULER, roi]
    assert found[0].readings == (Reading("length", pytest.approx(np.hypot(2.1, 3.2)), "mm"),)
    # Append-only: a shorter list is a new revision; the old one stays in the history.
    measurements.save(ws, image.id, [roi], "alice")
    assert measurements.latest(ws, image.id)[1] == [roi]
    assert [r.kind for r in ws.revisions.history(image.id)] == ["measurements"] * 2
    # Measuring reads the image: it stays unreviewed.
    assert ws.image(image.id).status == "unreviewed"


def test_a_bad_record_is_left_out_and_named(ws: Workspace) -> None:
    image = ws.images()[0]
    good = measurements.to_record(RULER)
    bad = [{"kind": "ruler"}, {**good, "kind": "angle"}, {**good, "points": [1, 2, "x", 4]}]
    rev = ws.revisions.save_measurements(image.id, [good, *bad], author="alice")
    _, found, problems = measurements.latest(ws, image.id)
    assert found == [RULER]
    assert [p.split(":")[0] for p in problems] == [
        f"revision {rev.id}, measurement {i}" for i in (2, 3, 4)
    ]
    assert "unknown measurement kind 'angle'" in problems[1]


@pytest.mark.sqlite_only
def test_schema_3_workspace_upgrades_and_keeps_its_revisions(ws: Workspace) -> None:
    image = ws.images()[0]
    first = ws.revisions.save_mask(
        image.id, np.ones((32, 24), np.uint8), source="human", author="a"
    )
    second = ws.revisions.save_mask(
        image.id, np.zeros((32, 24), np.uint8), source="human", author="a"
    )
    path = ws.root / DB_NAME
    ws.close()
    db = sqlite3.connect(path)
    db.executescript(  # schema 3's revisions table, as it was
        "PRAGMA user_version = 3; ALTER TABLE models DROP COLUMN files;"
        " ALTER TABLE revisions RENAME TO r4;"
        " CREATE TABLE revisions (id INTEGER PRIMARY KEY, image INTEGER NOT NULL REFERENCES"
        " images(id), kind TEXT NOT NULL CHECK (kind IN ('mask', 'labels', 'status')), source"
        " TEXT NOT NULL, author TEXT NOT NULL, model_name TEXT, model_version TEXT, created_at"
        " REAL NOT NULL, parent INTEGER REFERENCES revisions(id), blob TEXT, payload TEXT NOT"
        " NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}');"
        " INSERT INTO revisions SELECT * FROM r4; DROP TABLE r4;"
    )
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO revisions (image, kind, source, author, created_at)"
            " VALUES (?, 'measurements', 'human', 'a', 0)",
            (image.id,),
        )
    db.close()
    with Workspace.open(ws.root) as again:
        assert again.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert [r.id for r in again.revisions.history(image.id)] == [first.id, second.id]
        assert again.revisions.get(second.id).parent_id == first.id
        measurements.save(again, image.id, [RULER], "bob")
        assert measurements.latest(again, image.id)[1] == [RULER]
        with pytest.raises(Exception, match="CHECK"):
            again.db.execute(
                "INSERT INTO revisions (image, kind, source, author, created_at)"
                " VALUES (?, 'bogus', 'human', 'a', 0)",
                (image.id,),
            )


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fp:
        return list(csv.DictReader(fp))


def test_csv_has_measurements_and_class_volumes(ws: Workspace, tmp_path: Path) -> None:
    ws.models.register(
        "organs",
        "1",
        spec={"classes": [{"name": "background"}, {"name": "=liver"}, {"name": "cyst"}]},
    )
    rows = ws.images()
    for k, row in enumerate(rows):  # class 1: 10 pixels on each of the 3 slices; class 2: 4 on one
        m = np.zeros((32, 24), np.uint8)
        m[0, :10] = 1
        if k == 1:
            m[5, :4] = 2
        ws.revisions.save_mask(row.id, m, source="ai", author="unet", model=("organs", "1"))
    measurements.save(ws, rows[1].id, [RULER], "alice")
    report = export_workspace(ws, tmp_path / "out", "csv", which="original")
    images = _read(tmp_path / "out" / "images_original.csv")
    voxel_ml = 0.7 * 0.8 * 1.0 / 1000
    for record in images:
        assert float(record[VOLUME + "=liver"]) == pytest.approx(30 * voxel_ml, abs=1e-4)
        assert float(record[VOLUME + "cyst"]) == pytest.approx(4 * voxel_ml, abs=1e-4)
    assert tmp_path / "out" / "measurements.csv" in report.files
    (line,) = _read(tmp_path / "out" / "measurements.csv")
    assert line["image_id"] == str(rows[1].id) and line["kind"] == "ruler"
    assert (line["measurement"], line["quantity"], line["unit"]) == ("1", "length", "mm")
    assert float(line["value"]) == pytest.approx(np.hypot(2.1, 3.2), abs=1e-4)
    assert line["author"] == "alice"


def test_csv_without_measurements_writes_no_table(ws: Workspace, tmp_path: Path) -> None:
    report = export_workspace(ws, tmp_path, "csv")
    assert [f.name for f in report.files] == ["images_final.csv"]


def test_series_class_volumes_from_the_shown_masks(ws: Workspace, tmp_path: Path) -> None:
    rows = ws.images()
    for row in rows[:2]:
        m = np.zeros((32, 24), np.uint8)
        m[:5, :4] = 1  # 20 pixels
        ws.revisions.save_mask(row.id, m, source="ai", author="unet")
    ws.revisions.save_mask(rows[0].id, np.zeros((32, 24), np.uint8), source="human", author="a")
    volumes = measurements.series_class_volumes(ws, rows[2].id)
    assert volumes == {1: pytest.approx(20 * 0.7 * 0.8 / 1000)}  # the human's empty mask shows
    # A lone image (another series) is no volume.
    alone = tmp_path / "alone"
    alone.mkdir()
    from tests.imaging.helpers import write_ct_slice

    write_ct_slice(alone / "x.dcm", np.zeros((8, 8), np.int16), series_uid="9.9")
    ws.import_paths([alone])
    lone = next(r for r in ws.images() if r.series_uid == "9.9")
    assert measurements.series_class_volumes(ws, lone.id) is None
