"""The training queue's rows on a PostgreSQL workspace: procrastinate's tables (its schema,
applied once by `install`), which queued task carries a workspace job and whether the worker
doing it still beats, and `job_events`, the events a worker's job printed, in order, for the
app to read back (the local `jobs/<id>/stdout.log` of a job run elsewhere).

SQL only: the queue itself (defer, cancel, the worker) is `training.queue` over procrastinate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import errors as pg_errors

from medviewer.workspace import roles
from medviewer.workspace.errors import PermissionDenied, WorkspaceError

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

TASK = "medviewer.training"  # procrastinate task name; its args carry {"job_id": N, ...}
QUEUE = "medviewer-training"
# A job on several nodes: node 0's worker defers one of these per other node, {"job_id": N,
# "endpoint": HOST:PORT, "node_rank": R, ...}, for another worker to run its ranks.
JOIN_TASK = "medviewer.training.join"
# A worker whose heartbeat (procrastinate's, every STALE_S / 3 s) is older than this is dead.
STALE_S = float(os.environ.get("MEDVIEWER_WORKER_STALE_S", "30"))

_EVENTS_DDL = """CREATE TABLE IF NOT EXISTS job_events (
    id BIGSERIAL PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    event TEXT NOT NULL
)"""
_EVENTS_INDEX = "CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, id)"


class QueueError(WorkspaceError):
    """The training queue cannot be used (an SQLite workspace, the server refused, ...)."""


@dataclass(frozen=True)
class Queued:
    """The queued task of a workspace job: procrastinate's `status` (todo, doing, succeeded,
    failed, cancelled, aborted) and, while doing, whether its worker still beats."""

    task_id: int
    status: str
    worker_alive: bool
    request: dict[str, Any] = field(default_factory=dict)  # as queued (a resume queues it again)


def _server(ws: Workspace) -> None:
    if ws.dialect != "postgresql":
        raise QueueError(
            f"{ws.where}: a job queue needs a PostgreSQL workspace (workspace create "
            "--database postgresql://...); an SQLite workspace trains locally"
        )


def installed(ws: Workspace) -> bool:
    """Are the queue's tables in this workspace's database (False on SQLite)?"""
    if ws.dialect != "postgresql":
        return False
    found = ws.db.execute(
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL"
        " AND to_regclass('job_events') IS NOT NULL"
    ).fetchone()
    return bool(found[0])


def install(ws: Workspace, procrastinate_schema: str) -> None:
    """Apply procrastinate's schema (its SQL text, given by training.queue) and job_events,
    once, with `workspace.roles`' grants on them: idempotent, and two first users at once wait
    on one advisory lock. Creating tables needs the administrator (`workspace grant` does it)."""
    _server(ws)
    if installed(ws):
        return
    with ws.transaction(
        "install the training queue (the administrator's `workspace grant` does)"
    ) as db:
        db.lock("training queue schema")
        if db.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
            # Raw: the schema holds jsonb `?` operators the `?` placeholder translation breaks.
            db.raw.execute(procrastinate_schema)  # type: ignore[attr-defined]
        db.execute(_EVENTS_DDL)
        db.execute(_EVENTS_INDEX)
        roles.apply(db)  # who may queue, cancel, take jobs and read their events


def failure(ws: Workspace, what: str, error: BaseException) -> WorkspaceError:
    """What a failed queue call (procrastinate's errors wrap psycopg's) reads as: the server's
    refusal of this login's role as PermissionDenied, anything else as QueueError."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, pg_errors.InsufficientPrivilege):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, pg_errors.InsufficientPrivilege):
        said = cause.diag.message_primary or cause
        return PermissionDenied(
            f"{ws.where}: {ws.db.user} may not {what} (the server refused: {said})"
        )
    return QueueError(f"{ws.where}: cannot {what}: {error}")


def queued(ws: Workspace, job_id: int) -> Queued | None:
    """The latest queued task of workspace job `job_id`; None for a job never queued (a local
    one) and on SQLite."""
    if not installed(ws):
        return None
    row = ws.db.execute(
        "SELECT j.id, j.status::text, w.last_heartbeat > now() - make_interval(secs => ?),"
        " j.args -> 'request'"
        " FROM procrastinate_jobs j LEFT JOIN procrastinate_workers w ON w.id = j.worker_id"
        " WHERE j.task_name = ? AND (j.args->>'job_id')::bigint = ?"
        " ORDER BY j.id DESC LIMIT 1",
        (STALE_S, TASK, job_id),
    ).fetchone()
    if row is None:
        return None
    return Queued(int(row[0]), str(row[1]), bool(row[2]), dict(row[3] or {}))


def task_status(ws: Workspace, task_id: int) -> str | None:
    """procrastinate's status of one queued task (todo, doing, ...); None when there is none."""
    if not installed(ws):
        return None
    row = ws.db.execute(
        "SELECT status::text FROM procrastinate_jobs WHERE id = ?", (task_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def live_workers(ws: Workspace) -> int:
    """Workers taking this workspace's jobs whose heartbeat is recent (0 on SQLite)."""
    if not installed(ws):
        return 0
    row = ws.db.execute(
        "SELECT count(*) FROM procrastinate_workers"
        " WHERE last_heartbeat > now() - make_interval(secs => ?)",
        (STALE_S,),
    ).fetchone()
    return int(row[0])


def add_event(ws: Workspace, job_id: int, event: str) -> None:
    """One event line (JSON) of a job, after those already there."""
    with ws.transaction(f"record an event of job {job_id}") as db:
        db.execute("INSERT INTO job_events (job_id, event) VALUES (?, ?)", (job_id, event))


def events_after(ws: Workspace, job_id: int, after: int = 0) -> list[tuple[int, str]]:
    """(row id, event line) of the job's events after row id `after`, in order."""
    if not installed(ws):
        return []
    rows = ws.db.execute(
        "SELECT id, event FROM job_events WHERE job_id = ? AND id > ? ORDER BY id",
        (job_id, after),
    )
    return [(int(r[0]), str(r[1])) for r in rows]
