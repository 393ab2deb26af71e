"""Which images other clients changed: the app's worklist refresh, polled on a worker thread.

On PostgreSQL each committed revision sends NOTIFY medviewer_revisions with its image id (a
trigger, `schema.DIALECT_STEPS`), delivered at commit, so `poll(timeout)` blocks until one comes
and never misses a revision whose id is lower than one already seen (ids are not commit order
there). On SQLite writers commit in id order: `poll` reads the revisions after the last it saw.
A window opening or closing an image sends NOTIFY medviewer_leases with its image id
(`announce_lease`, called by `leases`), so others show who has it open within a poll, not at
their next heartbeat; a feed made with `leases=True` hears those too (`poll_changes`). SQLite
has one window per workspace (AppLock): no lease news there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

CHANNEL = "medviewer_revisions"
LEASE_CHANNEL = "medviewer_leases"


def announce_lease(ws: Workspace, db: Any, image_id: int) -> None:
    """Inside the transaction that opens or releases a lease on `db`: wake the other windows'
    feeds at commit (never if it rolls back). Nothing on SQLite."""
    if ws.dialect == "postgresql":
        db.execute("SELECT pg_notify(?, ?)", (LEASE_CHANNEL, str(image_id)))


@dataclass(frozen=True)
class Changes:
    """What one poll heard: images with new revisions, images a window opened or closed."""

    revisions: set[int] = field(default_factory=set)
    leases: set[int] = field(default_factory=set)


class ChangeFeed:
    """Changed image ids since the feed opened (or was last polled). Use from one thread;
    `close()` when done. On PostgreSQL it holds its own connection (LISTEN); `leases=True`
    also listens for leases opened and released (read them with `poll_changes`)."""

    def __init__(self, ws: Workspace, *, leases: bool = False) -> None:
        self.ws = ws
        self._listener: Any = None
        if ws.dialect == "postgresql":
            from medviewer.workspace.postgres import connect

            self._listener = connect(ws._url, readonly=True, where=ws.where)
            self._listener.raw.execute(f"LISTEN {CHANNEL}")
            if leases:
                self._listener.raw.execute(f"LISTEN {LEASE_CHANNEL}")
        else:
            self._last = ws.db.execute("SELECT coalesce(max(id), 0) FROM revisions").fetchone()[0]

    def poll(self, timeout: float = 0.0) -> set[int]:
        """Images with new revisions since the last poll; waits up to `timeout` seconds for the
        first. (A `leases=True` feed: lease news also ends the wait, and is dropped here.)"""
        return self.poll_changes(timeout).revisions

    def poll_changes(self, timeout: float = 0.0) -> Changes:
        """New revisions and lease news since the last poll; waits up to `timeout` seconds for
        the first of either."""
        if self._listener is not None:
            heard = Changes()
            by_channel = {CHANNEL: heard.revisions, LEASE_CHANNEL: heard.leases}
            # Never break out of notifies(): what it read but did not yield would be lost.
            for note in self._listener.raw.notifies(timeout=timeout, stop_after=1):
                by_channel[note.channel].add(int(note.payload))
            if heard.revisions or heard.leases:
                for note in self._listener.raw.notifies(timeout=0.05):  # what came with it
                    by_channel[note.channel].add(int(note.payload))
            return heard
        return Changes(revisions=self._poll_revisions(timeout))

    def _poll_revisions(self, timeout: float) -> set[int]:
        """SQLite: the revisions after the last one seen."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.ws.db.execute(
                "SELECT id, image FROM revisions WHERE id > ? ORDER BY id", (self._last,)
            ).fetchall()
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if rows:
            self._last = rows[-1][0]
        return {image for _, image in rows}

    def changes(self, timeout: float = 1.0) -> Iterator[set[int]]:
        """Endless sets of changed images, each after up to `timeout` seconds (empty: none);
        a worker loops over it until the app closes the feed."""
        while True:
            yield self.poll(timeout)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> ChangeFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
