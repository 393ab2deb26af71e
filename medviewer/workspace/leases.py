"""Who has an image open: a lease per client (one app window), renewed by heartbeats and gone
when it expires, so an app that dies stops showing within LEASE_SECONDS. A lease only shows;
it never stops another clinician from editing (a concurrent save is kept and flagged a conflict,
`revisions._parent_of`). Times are the database's clock on PostgreSQL, so clients whose clocks
differ agree on expiry; the holder is the login there (`Workspace.acting_user`). Opening a new
lease and releasing one tell the other windows at once (`changes.announce_lease`); a renewal
(heartbeat) tells nobody: nothing they show changes.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medviewer.workspace.changes import announce_lease

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

LEASE_SECONDS = 60.0  # an app heartbeats every LEASE_SECONDS / 3


@dataclass(frozen=True)
class Lease:
    image_id: int
    client: str
    holder: str
    since: float
    heartbeat: float
    expires: float


_COLUMNS = "image, client, holder, since, heartbeat, expires"


def client_id() -> str:
    """This window: host, process and a random part (two windows of one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _now(ws: Workspace) -> float:
    if ws.dialect == "postgresql":
        return float(ws.db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
    return time.time()


def open_lease(
    ws: Workspace, image_id: int, holder: str, client: str, *, seconds: float = LEASE_SECONDS
) -> Lease:
    """Record that `client` (`holder`) has the image open; renews a lease it already has."""
    ws.image(image_id)  # UnknownImage before anything is written
    who = ws.acting_user(holder)
    with ws.transaction(f"open image {image_id}") as db:
        now = _now(ws)
        db.execute("DELETE FROM leases WHERE expires < ?", (now,))
        db.execute(
            f"INSERT INTO leases ({_COLUMNS}) VALUES (?,?,?,?,?,?) ON CONFLICT (image, client)"
            " DO UPDATE SET holder = excluded.holder, heartbeat = excluded.heartbeat,"
            " expires = excluded.expires",
            (image_id, client, who, now, now, now + seconds),
        )
        row = db.execute(
            f"SELECT {_COLUMNS} FROM leases WHERE image = ? AND client = ?", (image_id, client)
        ).fetchone()
        lease = Lease(*row)
        if lease.since == now:  # new (a renewal keeps its start): others see it within a poll
            announce_lease(ws, db, image_id)
    return lease


def heartbeat(ws: Workspace, lease: Lease, *, seconds: float = LEASE_SECONDS) -> Lease:
    """Keep the lease alive; re-opens it if it had expired meanwhile (a long pause)."""
    return open_lease(ws, lease.image_id, lease.holder, lease.client, seconds=seconds)


def release(ws: Workspace, lease: Lease) -> None:
    """The window closed the image."""
    with ws.transaction(f"close image {lease.image_id}") as db:
        db.execute(
            "DELETE FROM leases WHERE image = ? AND client = ?", (lease.image_id, lease.client)
        )
        announce_lease(ws, db, lease.image_id)


def who_has(ws: Workspace, image_id: int, *, besides: str | None = None) -> list[Lease]:
    """The unexpired leases on an image, oldest first; `besides`: leave out this client."""
    rows = ws.db.execute(
        f"SELECT {_COLUMNS} FROM leases WHERE image = ? AND expires >= ? ORDER BY since, client",
        (image_id, _now(ws)),
    ).fetchall()
    return [Lease(*r) for r in rows if r[1] != besides]
