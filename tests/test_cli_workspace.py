"""Workspace commands end to end: import, import-masks, status, history; errors as one line."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace
from medviewer.workspace.store import DB_NAME
from tests.workspace.test_opening import chmod_stops_writes, damage_database


@pytest.fixture
def imported(tmp_path: Path, series_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    ws = tmp_path / "ws"
    assert main(["import", str(series_dir), "--workspace", str(ws)]) == 0
    assert "3 new image(s), 0 already indexed" in capsys.readouterr().out
    return ws


def _label_map(value: int, shape: tuple[int, int] = (32, 24)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[1:5, 2:9] = value
    return m


def test_import_masks_by_stem_with_per_file_errors(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "s0.png"), _label_map(1))
    cv2.imwrite(str(masks / "s1.png"), _label_map(1, (10, 10)))  # wrong size
    cv2.imwrite(str(masks / "s2.png"), np.dstack([_label_map(1)] * 3))  # colour, not labels
    cv2.imwrite(str(masks / "other.png"), _label_map(1))  # matches no image
    code = main(["import-masks", str(masks), "--workspace", str(imported), "--author", "dr.x"])
    out = capsys.readouterr().out
    assert code == 1
    assert "s0.png -> image 1" in out
    assert f"error: {masks / 's1.png'}: " in out and "mask is 10x10, the image is 24x32" in out
    assert "s2.png: colour PNG; expected a label map" in out
    assert "other.png: no image whose file name or SOP Instance UID is 'other'" in out
    assert "1 mask(s) imported, 3 failed" in out
    with Workspace.open(imported) as ws:
        rev = ws.revisions.confirmed(1).revision
        assert (rev.source, rev.author) == ("import", "dr.x")
        assert np.array_equal(ws.revisions.read_mask(rev), _label_map(1))


def test_import_masks_class_mismatch_against_model(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Workspace.open(imported) as ws:
        classes = [{"name": n, "color": [0, 0, 0]} for n in ("background", "kidney")]
        ws.models.register("abdomen", "1", spec={"classes": classes})
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "s0.png"), _label_map(3))
    args = ["import-masks", str(masks), "--workspace", str(imported), "--author", "a"]
    assert main([*args, "--model", "abdomen"]) == 2
    assert "mask has class 3, the model has only 2 classes (0-1)" in capsys.readouterr().out
    assert main([*args, "--model", "nope"]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err


def test_import_masks_csv_map(imported: Path, tmp_path: Path, series_dir: Path) -> None:
    masks = tmp_path / "m"
    masks.mkdir()
    cv2.imwrite(str(masks / "anything.png"), _label_map(2))
    table = tmp_path / "map.csv"
    with open(table, "w", newline="") as fp:
        csv.writer(fp).writerows([["mask", "image"], ["anything.png", str(series_dir / "s2.dcm")]])
    args = ["import-masks", str(masks), "--workspace", str(imported), "--author", "a"]
    assert main([*args, "--map", str(table)]) == 0
    with Workspace.open(imported) as ws:
        assert ws.revisions.confirmed(3).revision.summary["pixels"]["2"] == 28


def test_status_and_history(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Workspace.open(imported) as ws:
        ws.revisions.save_mask(1, _label_map(1), source="ai", author="unet", model=("chest", "2"))
        ws.revisions.save_mask(1, _label_map(0), source="human", author="dr.y")
        ws.revisions.set_status(1, "approved", author="dr.y")
    assert main(["status", "--workspace", str(imported), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 3 and data["status"] == {"approved": 1, "unreviewed": 2}
    ai = {"kind": "mask", "source": "ai", "model": "chest", "version": "2"}
    assert {**ai, "images": 1, "revisions": 1} in data["revisions"]
    assert main(["history", "1", "--workspace", str(imported)]) == 0
    out = capsys.readouterr().out
    assert "mask ai by unet chest 2" in out and "status human by dr.y: approved" in out


def test_unknown_image_and_bad_workspace_are_one_line(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "999", "--workspace", str(imported)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {imported}: no image with id 999")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["import", str(tmp_path), "--workspace", str(blocker / "ws")]) == 2
    assert "cannot create the workspace" in capsys.readouterr().err
    assert main(["status", "--workspace", str(tmp_path / "none")]) == 2  # reading creates none
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'none'}: no medviewer workspace here (medviewer.sqlite is missing)\n"
    )
    assert not (tmp_path / "none").exists()


def test_workspace_from_environment(
    imported: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDVIEWER_WORKSPACE", str(imported))
    assert main(["status"]) == 0
    assert capsys.readouterr().out.startswith("3 image(s)")


@pytest.mark.parametrize("fmt", ["dicom-seg", "png", "csv"])
def test_export_command(
    imported: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Workspace.open(imported) as ws:
        ws.revisions.save_mask(2, _label_map(1), source="human", author="dr.y")
    out = tmp_path / "out"
    assert main(["export", "--workspace", str(imported), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files and f"wrote {len(files)} file(s) to {out}" in printed
    suffix = {"dicom-seg": ".dcm", "png": ".png", "csv": ".csv"}[fmt]
    assert all(p.suffix == suffix for p in files)


@pytest.fixture
def with_masks(imported: Path) -> Path:
    """The imported workspace with a mask on each image, aged past the clean-up's grace."""
    with Workspace.open(imported) as ws:
        for image_id in (1, 2, 3):
            ws.revisions.save_mask(image_id, _label_map(image_id), source="human", author="dr")
    old = time.time() - 3600
    for f in (imported / "blobs").rglob("*.png"):
        os.utime(f, (old, old))
    return imported


def _workspace_files(root: Path) -> dict[str, tuple[bytes, int]]:
    sqlite_side_files = (f"{DB_NAME}-shm", f"{DB_NAME}-wal")  # a WAL reader may add these
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name not in sqlite_side_files
    }


READING = [
    ["status"],
    ["status", "--json"],
    ["history", "1"],
    ["models", "list"],
    ["export", "--format", "csv", "--out", "{out}/csv"],
    ["export", "--format", "png", "--out", "{out}/png"],
    ["export", "--format", "dicom-seg", "--out", "{out}/seg"],
]


def _run_all(commands: list[list[str]], ws: Path, out: Path) -> list[int]:
    return [main([*(a.format(out=out) for a in argv), "--workspace", str(ws)]) for argv in commands]


def test_emptied_or_deleted_database_is_an_error_and_no_mask_is_lost(
    with_masks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17: `: > medviewer.sqlite; medviewer status` made a new workspace, 0 image(s), and
    deleted every mask."""
    masks = sorted((with_masks / "blobs").rglob("*.png"))
    assert len(masks) == 3
    for lose in ("empty", "delete"):
        db = with_masks / DB_NAME
        db.write_bytes(b"") if lose == "empty" else db.unlink(missing_ok=True)
        commands = [*READING, ["review", "1", "--approve", "--author", "a"], ["import", "."]]
        assert _run_all(commands, with_masks, tmp_path) == [2] * len(commands)
        err = capsys.readouterr().err.splitlines()
        assert len(err) == len(commands)
        assert all(line.startswith(f"error: {with_masks}: holds workspace data") for line in err)
        assert sorted((with_masks / "blobs").rglob("*.png")) == masks


def test_reading_commands_write_nothing(with_masks: Path, tmp_path: Path) -> None:
    before = _workspace_files(with_masks)
    assert _run_all(READING, with_masks, tmp_path) == [0] * len(READING)
    assert _workspace_files(with_masks) == before


def test_read_only_folder_reads_and_writing_commands_say_so(
    with_masks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17, item 14: on a read-only mount every command failed, even `status`. The folder
    is made unwritable with chmod where that stops this user, else (root) by telling the
    opener so."""
    if chmod_stops_writes(tmp_path):
        for p in [with_masks, *with_masks.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    else:
        from medviewer.workspace import connection

        real = os.access
        monkeypatch.setattr(connection.os, "access", lambda p, m: m != os.W_OK and real(p, m))
    try:
        before = _workspace_files(with_masks)
        assert _run_all(READING, with_masks, tmp_path) == [0] * len(READING)
        assert "3 image(s)" in capsys.readouterr().out
        writing = [["review", "1", "--approve", "--author", "a"], ["models", "rollback", "m"]]
        assert _run_all(writing, with_masks, tmp_path) == [2, 2]
        assert (
            capsys.readouterr().err.splitlines()
            == [
                f"error: {with_masks}: cannot write to this workspace (a read-only folder or no "
                "permission); it can only be read"
            ]
            * 2
        )
        assert _workspace_files(with_masks) == before
    finally:
        for p in [with_masks, *with_masks.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def test_damaged_database_is_one_line_naming_it(
    with_masks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17, item 7: 300 bytes overwritten mid-file gave sqlite3.DatabaseError tracebacks."""
    damage_database(with_masks)
    commands = [c for c in READING if c[0] in ("status", "export")]
    assert _run_all(commands, with_masks, tmp_path) == [2] * len(commands)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {with_masks / DB_NAME}: the workspace database is damaged (database disk image "
        "is malformed); restore it from a backup"
    ] * len(commands)
