"""Workspace basics: open, import in place, list and filter, locking, schema versions."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medviewer.imaging import ImageLoader
from medviewer.workspace import (
    ImageQuery,
    SchemaTooNew,
    UnknownImage,
    Workspace,
    WorkspaceError,
    WorkspaceLocked,
)
from medviewer.workspace.schema import SCHEMA_VERSION


def test_import_indexes_in_place_and_reimport_adds_nothing(ws: Workspace, series_dir: Path) -> None:
    rows = ws.images()
    assert [r.path for r in rows] == [str(series_dir / f"s{k}.dcm") for k in range(3)]
    assert all(r.status == "unreviewed" for r in rows)
    again = ws.import_paths([series_dir])
    assert (again.added, again.already) == (0, 3)
    assert not list(ws.root.rglob("*.dcm"))  # referenced, not copied


def test_import_report_kept(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("hello")
    ws.import_paths([tmp_path / "junk.txt"])
    report = ws.import_reports()[-1]
    assert report["added"] == 0
    assert report["problems"] == [[str(tmp_path / "junk.txt"), "not a DICOM or image file"]]


def test_frame_ref_loads_pixels(ws: Workspace) -> None:
    row = ws.images()[2]
    pixels = ImageLoader().frames(ws.frame_ref(row.id).instance)
    assert pixels.shape == (1, 32, 24) and pixels[0, 0, 0] == 200


def test_filter_and_sort_worklist(ws: Workspace) -> None:
    a, b, c = (r.id for r in ws.images())
    mask = np.zeros((32, 24), np.uint8)
    for image_id, finding, unc in ((a, True, 0.1), (b, True, 0.7), (c, False, 0.5)):
        ws.revisions.save_mask(
            image_id,
            mask,
            source="ai",
            author="model",
            model=("m", "1"),
            summary={"finding": finding, "probability": 0.5, "uncertainty": unc},
        )
    ws.revisions.set_status(a, "approved", author="dr")
    q = ImageQuery(status=["unreviewed"], ai_finding=True, order="uncertainty", descending=True)
    assert [r.id for r in ws.images(q)] == [b]
    q = ImageQuery(order="uncertainty", descending=True)
    assert [r.id for r in ws.images(q)] == [b, c, a]
    assert [r.id for r in ws.images(ImageQuery(text="s1.dcm"))] == [b]
    with pytest.raises(ValueError, match="unknown order"):
        ws.images(ImageQuery(order="colour"))


def test_find_image_by_id_uid_path(ws: Workspace, series_dir: Path) -> None:
    row = ws.images()[1]
    assert ws.find_image(str(row.id)).id == row.id
    assert ws.find_image(str(series_dir / "s1.dcm")).id == row.id
    with pytest.raises(UnknownImage, match="no image 'nope'"):
        ws.find_image("nope")


def test_second_app_instance_is_told(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "w", app_lock=True):
        code = (
            "import sys; from medviewer.workspace import Workspace\n"
            "try:\n    Workspace.open(sys.argv[1], app_lock=True)\n"
            "except Exception as e:\n    print(type(e).__name__, e)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "w")], capture_output=True, text=True
        ).stdout
        assert out.startswith("WorkspaceLocked")
        assert "already open in another medviewer (process" in out
        with pytest.raises(WorkspaceLocked):
            Workspace.open(tmp_path / "w", app_lock=True)
    Workspace.open(tmp_path / "w", app_lock=True).close()  # released on close


@pytest.mark.sqlite_only
def test_wal_mode_and_schema_version(ws: Workspace) -> None:
    assert ws.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ws.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_refused(tmp_path: Path) -> None:
    Workspace.open(tmp_path / "w").close()
    db = sqlite3.connect(tmp_path / "w" / "medviewer.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(SchemaTooNew, match="update medviewer"):
        Workspace.open(tmp_path / "w")


def test_readonly_open_of_missing_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no medviewer workspace here"):
        Workspace.open(tmp_path / "none", readonly=True)


def test_readonly_cannot_write(ws: Workspace) -> None:
    with Workspace.open(ws.root, readonly=True) as ro:
        assert len(ro.images()) == 3
        with pytest.raises(WorkspaceError):
            ro.revisions.set_status(ro.images()[0].id, "approved", author="dr")
