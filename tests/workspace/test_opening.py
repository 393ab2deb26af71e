"""Opening a workspace: only a workspace is opened, read-only opens never write, and a lost or
damaged database is an error naming the file, never a fresh workspace (issue 17)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from medviewer.workspace import (
    DatabaseDamaged,
    NotAWorkspace,
    ReadOnlyWorkspace,
    Workspace,
)
from medviewer.workspace.store import DB_NAME

pytestmark = pytest.mark.sqlite_only  # the SQLite file and the folder around it

# SQLite's own coordination files, which a WAL reader may create beside the database.
SQLITE_SIDE_FILES = {f"{DB_NAME}-shm", f"{DB_NAME}-wal"}


@pytest.fixture
def with_masks(ws: Workspace) -> Path:
    """A closed workspace with three mask blobs, aged past the clean-up's grace period."""
    for image_id in (1, 2, 3):
        mask = np.zeros((32, 24), np.uint8)
        mask[: image_id + 1] = 1
        ws.revisions.save_mask(image_id, mask, source="human", author="dr")
    ws.close()
    old = time.time() - 3600
    for f in (ws.root / "blobs").rglob("*.png"):
        os.utime(f, (old, old))
    return ws.root


def _blobs(root: Path) -> list[Path]:
    return sorted((root / "blobs").rglob("*.png"))


def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("how", ["emptied", "deleted", "header only"])
@pytest.mark.parametrize("readonly", [False, True])
def test_lost_database_is_refused_and_no_mask_deleted(
    with_masks: Path, how: str, readonly: bool
) -> None:
    masks = _blobs(with_masks)
    assert len(masks) == 3
    db = with_masks / DB_NAME
    if how == "emptied":
        db.write_bytes(b"")
    elif how == "deleted":
        db.unlink()
    else:  # a database with no tables: what SQLite leaves when it creates one
        db.unlink()
        sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").fetchone()
    with pytest.raises(NotAWorkspace) as raised:
        Workspace.open(with_masks, readonly=readonly)
    assert str(with_masks) in str(raised.value) and "blobs" in str(raised.value)
    assert _blobs(with_masks) == masks


def test_new_or_empty_folder_and_folder_of_studies_become_workspaces(
    tmp_path: Path, series_dir: Path
) -> None:
    for root in (tmp_path / "new", tmp_path / "empty", series_dir.parent):
        root.mkdir(exist_ok=True)
        with Workspace.open(root) as ws:  # `demo` writes its studies, then opens the folder
            assert ws.images() == []
        with Workspace.open(root, readonly=True) as ws:
            assert ws.images() == []


def test_empty_database_file_alone_becomes_a_workspace(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"")
    with Workspace.open(tmp_path) as ws:
        assert ws.images() == []


def test_other_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    with pytest.raises(NotAWorkspace, match="not a medviewer workspace database"):
        Workspace.open(tmp_path)


def test_readonly_open_writes_nothing(with_masks: Path) -> None:
    before = _files(with_masks)
    with Workspace.open(with_masks, readonly=True) as ws:
        assert len(ws.images()) == 3
        assert [ws.revisions.read_mask(ws.revisions.confirmed(i).revision).sum() for i in (1, 2, 3)]
        assert ws.models.list() == [] and ws.jobs.list() == []
    after = _files(with_masks)
    assert set(after) - set(before) <= SQLITE_SIDE_FILES
    assert {k: v for k, v in after.items() if k in before} == before


def chmod_stops_writes(tmp: Path) -> bool:
    """False for root (unless run without CAP_DAC_OVERRIDE), who writes through chmod a-w."""
    probe = tmp / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").touch()
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
    return False


def test_readonly_folder_reads_and_refuses_writes(with_masks: Path, tmp_path: Path) -> None:
    if not chmod_stops_writes(tmp_path):
        pytest.skip("this user (root) writes through chmod a-w")
    try:
        for p in [with_masks, *with_masks.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
        with Workspace.open(with_masks, readonly=True) as ws:
            assert len(ws.images()) == 3
            assert ws.revisions.read_mask(ws.revisions.confirmed(1).revision).any()
        with pytest.raises(ReadOnlyWorkspace, match=str(with_masks)):
            Workspace.open(with_masks)
    finally:
        for p in [with_masks, *with_masks.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


def test_readonly_folder_decisions(with_masks: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only folder means to the opener, also where the tests run as root (who may
    write anyway): readable without the -shm file SQLite cannot create, unwritable with a
    message naming the folder, and refused when a crash left changes in the -wal."""
    from medviewer.workspace import connection

    real_access = os.access
    monkeypatch.setattr(
        connection.os, "access", lambda p, mode: mode != os.W_OK and real_access(p, mode)
    )
    before = _files(with_masks)
    with Workspace.open(with_masks, readonly=True) as ws:
        assert len(ws.images()) == 3
    assert _files(with_masks) == before  # immutable: not even SQLite's side files
    with pytest.raises(ReadOnlyWorkspace, match=f"{with_masks}: cannot write"):
        Workspace.open(with_masks)
    (with_masks / f"{DB_NAME}-wal").write_bytes(b"x" * 100)
    with pytest.raises(ReadOnlyWorkspace, match="changes not yet in"):
        Workspace.open(with_masks, readonly=True)


def damage_database(root: Path) -> None:
    """Overwrite the revisions table's first page, as a bad disk or copy would."""
    db = sqlite3.connect(root / DB_NAME)
    page = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'revisions'").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(root / DB_NAME, "r+b") as fp:
        fp.seek((page - 1) * size)
        fp.write(b"\xa5" * 300)


@pytest.mark.parametrize("readonly", [False, True])
def test_damaged_database_is_one_error_naming_the_file(with_masks: Path, readonly: bool) -> None:
    damage_database(with_masks)
    masks = _blobs(with_masks)
    with pytest.raises(DatabaseDamaged) as raised:
        with Workspace.open(with_masks, readonly=readonly) as ws:
            ws.revisions.history(1)
    assert str(raised.value).startswith(f"{with_masks / DB_NAME}: the workspace database is")
    assert _blobs(with_masks) == masks


def test_copied_workspace_keeps_its_masks(with_masks: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(with_masks, copy)
    with Workspace.open(copy) as ws:
        assert len(ws.images()) == 3
    assert len(_blobs(copy)) == 3
