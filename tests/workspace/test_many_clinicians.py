"""Many clinicians on one workspace, on both stores: who has an image open (leases), a
concurrent edit of one image kept and flagged for the reviewer, and the change feed."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.workspace import ImageQuery, UnknownImage, Workspace
from medviewer.workspace.changes import ChangeFeed
from medviewer.workspace.leases import heartbeat, open_lease, release, who_has
from medviewer.workspace.review_state import load_review, save_mask_edit


def _second(ws: Workspace) -> Workspace:
    """Another client of the same workspace (its own connections)."""
    return Workspace.open(ws.database or ws.root)


def test_leases_show_who_has_an_image_until_released_or_expired(ws: Workspace) -> None:
    other = _second(ws)
    try:
        mine = open_lease(ws, 1, "dr.a", "window-a")
        theirs = open_lease(other, 1, "dr.b", "window-b", seconds=0.0)  # expires at once
        assert [lease.client for lease in who_has(ws, 1)] in (
            ["window-a"],
            ["window-a", "window-b"],
        )
        assert who_has(ws, 1, besides="window-a") in ([], [theirs])
        renewed = heartbeat(ws, mine)
        assert renewed.expires >= mine.expires and renewed.since == mine.since
        theirs = open_lease(other, 1, "dr.b", "window-b")
        assert {lease.client for lease in who_has(other, 1)} == {"window-a", "window-b"}
        release(ws, mine)
        assert [lease.client for lease in who_has(other, 1)] == ["window-b"]
        assert who_has(ws, 2) == []
        with pytest.raises(UnknownImage):
            open_lease(ws, 999, "dr.a", "window-a")
    finally:
        other.close()


def test_lease_holder_is_the_acting_user(ws: Workspace, backend: str) -> None:
    lease = open_lease(ws, 1, "typed name", "w")
    assert lease.holder == ("typed name" if backend == "sqlite" else ws.db.user)


def test_concurrent_edit_keeps_both_and_flags_a_conflict(ws: Workspace) -> None:
    other = _second(ws)
    try:
        a, b = load_review(ws, 1), load_review(other, 1)  # both start from no mask
        first = save_mask_edit(ws, a, np.ones((32, 24), np.uint8), "dr.a")
        assert not ws.image(1).conflict
        second = save_mask_edit(other, b, np.full((32, 24), 2, np.uint8), "dr.b")
        assert second.parent_id is None and first.parent_id is None  # siblings, both kept
        history = [r.id for r in ws.revisions.history(1) if r.kind == "mask"]
        assert history == [first.id, second.id]
        assert ws.image(1).conflict
        assert [r.id for r in ws.images(ImageQuery(conflict=True))] == [1]
        # An edit from the newest mask settles it; so does a reviewer's decision.
        again = load_review(ws, 1)
        save_mask_edit(ws, again, np.zeros((32, 24), np.uint8), "dr.a")
        assert not ws.image(1).conflict
        stale = load_review(other, 2)
        save_mask_edit(ws, load_review(ws, 2), np.ones((32, 24), np.uint8), "dr.a")
        save_mask_edit(other, stale, np.ones((32, 24), np.uint8), "dr.b")
        assert ws.image(2).conflict
        ws.revisions.set_status(2, "approved", author="dr.c")
        assert not ws.image(2).conflict
    finally:
        other.close()


def test_a_later_ai_proposal_is_no_conflict(ws: Workspace) -> None:
    state = load_review(ws, 1)
    ws.revisions.save_mask(
        1, np.ones((32, 24), np.uint8), source="ai", author="m", model=("m", "1")
    )
    save_mask_edit(ws, state, np.full((32, 24), 2, np.uint8), "dr.a")
    assert not ws.image(1).conflict


def test_change_feed_reports_other_clients_revisions(ws: Workspace) -> None:
    other = _second(ws)
    try:
        with ChangeFeed(ws) as feed:
            assert feed.poll() == set()
            other.revisions.set_status(2, "in_progress", author="dr.b")
            other.revisions.save_labels(3, {"x": True}, source="human", author="dr.b")
            seen: set[int] = set()
            for changed in feed.changes(timeout=10):
                seen |= changed
                if seen >= {2, 3} or not changed:
                    break
            assert seen == {2, 3}
            assert feed.poll() == set()
    finally:
        other.close()
