"""Which images other clients changed: the app's worklist refresh, polled on a worker thread.

On PostgreSQL each committed revision sends NOTIFY medviewer_revisions with its image id (a
trigger, `schema.DIALECT_STEPS`), delivered at commit, so `poll(timeout)` blocks until one comes
and never misses a revision whose id is lower than one already seen (ids are not commit order
there). On SQLite writers commit in id order: `poll` reads the revisions after the last it saw.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

CHANNEL = "medviewer_revisions"


class ChangeFeed:
    """Changed image ids since the feed opened (or was last polled). Use from one thread;
    `close()` when done. On PostgreSQL it holds its own connection (LISTEN)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._listener: Any = None
        if ws.dialect == "postgresql":
            from medviewer.workspace.postgres import connect

            self._listener = connect(ws._url, readonly=True, where=ws.where)
            self._listener.raw.execute(f"LISTEN {CHANNEL}")
        else:
            self._last = ws.db.execute("SELECT coalesce(max(id), 0) FROM revisions").fetchone()[0]

    def poll(self, timeout: float = 0.0) -> set[int]:
        """Images changed since the last poll; waits up to `timeout` seconds for the first."""
        if self._listener is not None:
            changed: set[int] = set()
            # Never break out of notifies(): what it read but did not yield would be lost.
            for note in self._listener.raw.notifies(timeout=timeout, stop_after=1):
                changed.add(int(note.payload))
            if changed:
                for note in self._listener.raw.notifies(timeout=0.05):  # what came with it
                    changed.add(int(note.payload))
            return changed
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
