"""Nothing lost: SIGKILL mid-save, a full disk, an unwritable folder, a damaged blob."""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medviewer.workspace import CorruptBlob, SaveError, Workspace
from medviewer.workspace import blobs as blobs_module
from medviewer.workspace.blobs import ORPHAN_DAYS, mask_hash

pytestmark = pytest.mark.sqlite_only  # the SQLite file and the blob folder themselves

# Saves revisions as fast as it can; prints "<revision id> <mask hash>" after each commit.
WRITER = """
import sys
import numpy as np
from medviewer.workspace import Workspace
ws = Workspace.open(sys.argv[1])
ids = [r.id for r in ws.images()]
rng = np.random.default_rng(int(sys.argv[2]))
while True:
    image = ws.image(int(rng.choice(ids)))
    mask = (rng.random((image.rows, image.columns)) < rng.random()).astype(np.uint8)
    mask *= rng.integers(1, 4, dtype=np.uint8)
    source = ["human", "ai"][int(rng.integers(2))]
    rev = ws.revisions.save_mask(image.id, mask, source=source, author="writer")
    ws.revisions.set_status(image.id, "in_progress", author="writer")
    print(rev.id, rev.blob, flush=True)
"""


def _check(root: Path, committed: dict[int, str]) -> None:
    db = sqlite3.connect(root / "medviewer.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with Workspace.open(root) as ws:  # opening cleans leftovers of the dead writer
        assert not any((root / "blobs" / "tmp").glob("*")), "temp files left behind"
        for row in ws.images():
            for rev in ws.revisions.history(row.id):
                if rev.kind != "mask":
                    continue
                mask = ws.revisions.read_mask(rev)  # raises CorruptBlob if missing or altered
                assert mask_hash(mask) == rev.blob
        for rev_id, digest in committed.items():
            assert ws.revisions.get(rev_id).blob == digest


def test_sigkill_at_random_points_loses_nothing_committed(ws: Workspace) -> None:
    root = ws.root
    ws.close()
    rng = random.Random(1234)
    committed: dict[int, str] = {}
    kills = 12
    for k in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(k)],
            stdout=subprocess.PIPE,
            text=True,
        )
        # Wait for the first commit so every kill lands mid-loop, then a random extra delay.
        first = proc.stdout.readline()
        assert first, "writer produced no revision"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        # print() writes its parts one by one, so a kill can cut the last line short (a
        # block of the pipe's buffer flushed mid-line): only whole lines are known commits.
        for line in (first + rest).splitlines(keepends=True):
            if line.endswith("\n") and line.strip():
                rev_id, digest = line.split()
                committed[int(rev_id)] = digest
        _check(root, committed)
    assert len(committed) >= kills  # at least the first commit of every writer


def _fail_with(err: int):
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(err, os.strerror(err))

    return fail


@pytest.mark.parametrize(
    ("err", "reason"),
    [(errno.ENOSPC, "disk full"), (errno.EROFS, "folder is read-only or not writable")],
)
def test_failed_save_keeps_previous_revision(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, err: int, reason: str
) -> None:
    image = ws.images()[0].id
    before = np.ones((32, 24), np.uint8)
    prev = ws.revisions.save_mask(image, before, source="human", author="dr")
    monkeypatch.setattr(blobs_module.os, "fsync", _fail_with(err))
    with pytest.raises(SaveError, match=f"could not save the mask: {reason}") as e:
        ws.revisions.save_mask(image, before * 2, source="human", author="dr")
    assert str(ws.root / "blobs") in str(e.value)
    monkeypatch.undo()
    assert ws.revisions.confirmed(image).revision.id == prev.id
    assert np.array_equal(ws.revisions.read_mask(ws.revisions.confirmed(image).revision), before)
    assert not any((ws.root / "blobs" / "tmp").glob("*"))


def test_database_write_failure_is_a_save_error(ws: Workspace) -> None:
    image = ws.images()[0].id
    prev = ws.revisions.save_mask(image, np.ones((32, 24), np.uint8), source="human", author="dr")
    ws.db.execute("PRAGMA query_only = ON")  # every write now fails inside SQLite
    with pytest.raises(SaveError, match="could not save the mask of image"):
        ws.revisions.save_mask(image, np.zeros((32, 24), np.uint8), source="human", author="dr")
    ws.db.execute("PRAGMA query_only = OFF")
    assert ws.revisions.confirmed(image).revision.id == prev.id


def test_damaged_blob_is_reported_not_returned(ws: Workspace) -> None:
    image = ws.images()[0].id
    rev = ws.revisions.save_mask(image, np.ones((32, 24), np.uint8), source="human", author="dr")
    path = ws.blobs.path(rev.blob)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CorruptBlob, match="stored mask is damaged"):
        ws.revisions.read_mask(rev)
    path.unlink()
    with pytest.raises(CorruptBlob, match="missing or unreadable"):
        ws.revisions.read_mask(rev)


def test_old_orphan_blobs_set_aside_recent_kept(ws: Workspace) -> None:
    orphan_old = ws.blobs.put(np.full((4, 4), 7, np.uint8))
    orphan_new = ws.blobs.put(np.full((4, 4), 8, np.uint8))
    old = time.time() - 3600
    os.utime(ws.blobs.path(orphan_old), (old, old))
    ws.clean_leftovers()
    assert not ws.blobs.path(orphan_old).exists() and ws.blobs.orphan_path(orphan_old).exists()
    assert ws.blobs.path(orphan_new).exists()  # may belong to a commit in flight elsewhere
    expired = time.time() - (ORPHAN_DAYS + 1) * 86400
    os.utime(ws.blobs.orphan_path(orphan_old), (expired, expired))
    ws.clean_leftovers()
    assert not ws.blobs.orphan_path(orphan_old).exists()


def test_a_database_restored_from_an_older_backup_loses_no_mask(
    tmp_path: Path, series_dir: Path
) -> None:
    """The backup does not name masks saved after it: they are set aside, not deleted, and come
    back when a database that names them is put back."""
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([series_dir])
        image = ws.images()[0].id
        ws.revisions.save_mask(image, np.zeros((32, 24), np.uint8), source="human", author="dr")
    db = tmp_path / "ws" / "medviewer.sqlite"
    backup = db.read_bytes()
    with Workspace.open(tmp_path / "ws") as ws:
        mask = np.ones((32, 24), np.uint8)
        newer = ws.revisions.save_mask(image, mask, source="human", author="dr")
        old = time.time() - 3600
        os.utime(ws.blobs.path(newer.blob), (old, old))
    current = db.read_bytes()
    db.write_bytes(backup)  # the older backup, restored
    with Workspace.open(tmp_path / "ws") as ws:  # its clean-up sets the newer mask aside
        assert not ws.blobs.path(newer.blob).exists()
        assert ws.blobs.orphan_path(newer.blob).exists()
    db.write_bytes(current)  # the right database found again
    with Workspace.open(tmp_path / "ws") as ws:
        assert np.array_equal(ws.revisions.read_mask(ws.revisions.get(newer.id)), mask)
        assert ws.blobs.path(newer.blob).exists()
