"""Saving the slices one volume edit changed: all as human revisions in one transaction, or none."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.workspace import Workspace, revisions
from medviewer.workspace.errors import MaskMismatch, SaveError
from medviewer.workspace.review_state import load_review, save_mask_edits


def _mask_rows(ws: Workspace) -> int:
    return ws.db.execute("SELECT COUNT(*) FROM revisions WHERE kind = 'mask'").fetchone()[0]


def test_many_slices_saved_as_human_revisions_with_parents(ws: Workspace) -> None:
    ids = [r.id for r in ws.images()]
    first = ws.revisions.save_mask(ids[0], np.ones((32, 24), np.uint8), source="ai", author="m")
    states = [load_review(ws, i) for i in ids]
    edits = [(s, np.full((32, 24), k + 1, np.uint8)) for k, s in enumerate(states)]
    revs = save_mask_edits(ws, edits, "dr.a")
    assert [r.image_id for r in revs] == ids
    assert all(r.source == "human" and r.author == "dr.a" for r in revs)
    assert revs[0].parent_id == first.id and revs[1].parent_id is None
    assert [s.mask_revision for s in states] == revs
    for k, i in enumerate(ids):
        latest = ws.revisions.latest(i, "mask")
        assert latest is not None and latest.id == revs[k].id
        assert np.all(ws.revisions.read_mask(latest) == k + 1)
        assert ws.revisions.confirmed(i) is not None  # a human mask is confirmed truth


def test_a_failure_midway_saves_none(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [r.id for r in ws.images()]
    states = [load_review(ws, i) for i in ids]
    real = revisions._update_image_state
    calls = {"n": 0}

    def fail_second(db, rev) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk gone")  # after the first row was inserted
        real(db, rev)

    monkeypatch.setattr(revisions, "_update_image_state", fail_second)
    edits = [(s, np.full((32, 24), 2, np.uint8)) for s in states]
    with pytest.raises(OSError, match="disk gone"):
        save_mask_edits(ws, edits, "dr.a")
    assert calls["n"] == 2
    assert _mask_rows(ws) == 0
    assert all(s.mask_revision is None for s in states)


def test_a_wrong_size_slice_refuses_all_before_writing(ws: Workspace) -> None:
    ids = [r.id for r in ws.images()]
    states = [load_review(ws, i) for i in ids]
    edits = [(s, np.zeros((32, 24), np.uint8)) for s in states]
    edits[2] = (states[2], np.zeros((24, 32), np.uint8))
    with pytest.raises(MaskMismatch, match="mask is 32x24, the image is 24x32"):
        save_mask_edits(ws, edits, "dr.a")
    assert _mask_rows(ws) == 0


def test_ai_source_and_locked_database_refused(ws: Workspace) -> None:
    ids = [r.id for r in ws.images()]
    with pytest.raises(ValueError, match="not 'ai'"):
        ws.revisions.save_masks(
            [(ids[0], np.zeros((32, 24), np.uint8), None)], source="ai", author="m"
        )
    ws.db.execute("BEGIN IMMEDIATE")  # a transaction already open on this connection
    try:
        with pytest.raises(SaveError, match="could not save the masks of 1 images"):
            ws.revisions.save_masks(
                [(ids[0], np.zeros((32, 24), np.uint8), None)], source="human", author="a"
            )
    finally:
        ws.db.execute("ROLLBACK")
    assert _mask_rows(ws) == 0
