"""Background jobs (training, batch inference) recorded so a restarted app shows how they ended."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medviewer.workspace.errors import SaveError

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

STATES = ("queued", "running", "finished", "failed", "cancelled")


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    model_name: str | None
    state: str
    created_at: float
    updated_at: float
    pid: int | None
    progress: dict[str, Any] = field(default_factory=dict)
    message: str = ""


_COLUMNS = "id, kind, model_name, state, created_at, updated_at, pid, progress, message"


def _job(r: tuple) -> JobRecord:
    return JobRecord(*r[:7], progress=json.loads(r[7]), message=r[8])


class Jobs:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    def create(self, kind: str, model_name: str | None = None) -> JobRecord:
        now = time.time()
        with self.ws.transaction(f"record a {kind} job") as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, model_name, state, created_at, updated_at)"
                " VALUES (?,?,?,?,?)",
                (kind, model_name, "queued", now, now),
            )
            job_id = cur.lastrowid
        return self.get(job_id)

    def update(
        self,
        job_id: int,
        *,
        state: str | None = None,
        pid: int | None = None,
        progress: dict[str, Any] | None = None,
        message: str | None = None,
    ) -> JobRecord:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown job state {state!r}; valid: {', '.join(STATES)}")
        sets, args = ["updated_at = ?"], [time.time()]
        for column, value in (("state", state), ("pid", pid), ("message", message)):
            if value is not None:
                sets.append(f"{column} = ?")
                args.append(value)
        if progress is not None:
            sets.append("progress = ?")
            args.append(json.dumps(progress))
        with self.ws.transaction(f"update job {job_id}") as db:
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
        try:
            return self.get(job_id)
        except self.ws.db.errors as e:  # e.g. locked by a long writer: the update itself is saved
            raise SaveError(f"{self.ws.root}: job {job_id} saved, but not read back: {e}") from e

    def get(self, job_id: int) -> JobRecord:
        r = self.ws.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if r is None:
            raise KeyError(f"no job {job_id}")
        return _job(r)

    def list(self, state: str | None = None) -> list[JobRecord]:
        rows = self.ws.db.execute(
            f"SELECT {_COLUMNS} FROM jobs" + (" WHERE state = ?" if state else "") + " ORDER BY id",
            (state,) if state else (),
        )
        return [_job(r) for r in rows]
