"""Lease news in the change feed: a window opening or closing an image wakes the others at
once on PostgreSQL; a heartbeat wakes nobody; SQLite (one window per workspace) has none."""

from __future__ import annotations

from medviewer.workspace import Workspace
from medviewer.workspace.changes import ChangeFeed
from medviewer.workspace.leases import heartbeat, open_lease, release


def _heard(feed: ChangeFeed, wait: float) -> tuple[set[int], set[int]]:
    revisions: set[int] = set()
    leases: set[int] = set()
    while True:
        heard = feed.poll_changes(wait)
        if not heard.revisions and not heard.leases:
            return revisions, leases
        revisions |= heard.revisions
        leases |= heard.leases
        wait = 0.5  # what came with the first


def test_opening_and_releasing_a_lease_is_news_a_heartbeat_is_not(ws: Workspace) -> None:
    other = Workspace.open(ws.database or ws.root)
    team = ws.dialect == "postgresql"
    try:
        with ChangeFeed(ws, leases=True) as feed, ChangeFeed(ws) as revisions_only:
            lease = open_lease(other, 2, "dr.b", "window-b")
            assert _heard(feed, 5.0) == (set(), {2} if team else set())
            heartbeat(other, lease)
            assert _heard(feed, 1.0) == (set(), set())
            release(other, lease)
            assert _heard(feed, 5.0) == (set(), {2} if team else set())
            other.revisions.set_status(3, "in_progress", author="dr.b")
            assert _heard(feed, 5.0) == ({3}, set())
            assert revisions_only.poll(1.0) == {3}  # a feed that did not ask hears no leases
    finally:
        other.close()
