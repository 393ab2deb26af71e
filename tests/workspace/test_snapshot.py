"""The training snapshot: human-confirmed data only, consistent while the GUI keeps saving."""

from __future__ import annotations

import threading

import numpy as np

from medviewer.workspace import Workspace, training_snapshot


def _mask(v: int) -> np.ndarray:
    m = np.zeros((32, 24), np.uint8)
    m[:4, :4] = v
    return m


def test_snapshot_picks_confirmed_revisions(ws: Workspace) -> None:
    a, b, c = (r.id for r in ws.images())
    ai_a = ws.revisions.save_mask(a, _mask(1), source="ai", author="m", model=("m", "1"))
    ws.revisions.set_status(a, "approved", author="dr")  # AI proposal accepted as is
    ws.revisions.save_mask(b, _mask(1), source="ai", author="m", model=("m", "1"))
    fixed = ws.revisions.save_mask(b, _mask(0), source="human", author="dr")  # a negative
    ws.revisions.save_mask(c, _mask(2), source="human", author="dr")
    ws.revisions.set_status(c, "rejected", author="dr")
    snap = training_snapshot(ws)
    by_image = {i.image_id: i for i in snap.items}
    assert set(by_image) == {a, b}
    assert by_image[a].mask.id == ai_a.id and not by_image[a].is_negative
    assert by_image[b].mask.id == fixed.id and by_image[b].is_negative
    assert snap.manifest()["items"][1]["mask_revision"] == fixed.id
    assert by_image[a].frame.instance.path.name == "s0.dcm"


def test_unreviewed_counted(ws: Workspace) -> None:
    a = ws.images()[0].id
    ws.revisions.save_mask(a, _mask(1), source="ai", author="m")
    snap = training_snapshot(ws)
    assert snap.items == [] and snap.unreviewed == 3


def test_snapshot_is_consistent_while_another_process_writes(ws: Workspace) -> None:
    images = [r.id for r in ws.images()]
    for i in images:
        ws.revisions.save_mask(i, _mask(1), source="human", author="dr")
    stop = threading.Event()

    def gui() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ws.revisions.save_mask(images[n % 3], _mask(n % 3), source="human", author="dr")

    writer = threading.Thread(target=gui)
    writer.start()
    try:
        with Workspace.open(ws.root, readonly=True) as trainer:
            for _ in range(20):
                snap = training_snapshot(trainer)
                # Every revision the snapshot names is at or before its own high-water mark.
                assert all(i.mask.id <= snap.last_revision_id for i in snap.items)
                assert len(snap.items) == 3
    finally:
        stop.set()
        writer.join()


def test_a_proposal_after_approval_does_not_replace_the_confirmed_mask(ws: Workspace) -> None:
    a = ws.images()[0].id
    accepted = ws.revisions.save_mask(a, _mask(1), source="ai", author="m", model=("m", "1"))
    ws.revisions.set_status(a, "approved", author="dr")
    ws.revisions.save_mask(a, _mask(2), source="ai", author="m", model=("m", "2"))  # newer model
    (item,) = training_snapshot(ws).items
    assert item.mask.id == accepted.id
    later = ws.revisions.save_mask(a, _mask(3), source="human", author="dr")  # a correction
    (item,) = training_snapshot(ws).items
    assert item.mask.id == later.id
