"""Training jobs through a PostgreSQL-backed queue (procrastinate) for a GPU server: the app
defers a task carrying the workspace job's id and request; `medviewer worker` on the GPU
machine takes it and runs it with its own JobManager (torchrun over its GPUs), whose events go
to `job_events` for the app to follow. Cancel is procrastinate's abort, which the worker polls
and turns into the job's own cancel (SIGTERM, then SIGKILL, to its process group).

The rows are `workspace.job_queue`'s; this module holds procrastinate's side, the worker's loop
is `training.worker`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medviewer.workspace import job_queue
from medviewer.workspace.job_queue import JOIN_TASK, QUEUE, TASK, QueueError

if TYPE_CHECKING:
    import procrastinate

    from medviewer.workspace.store import Workspace


def queue_app(ws: Workspace, *, sync: bool) -> procrastinate.App:
    try:
        import procrastinate
    except ImportError as e:  # pragma: no cover - a main dependency
        raise QueueError(
            "the training queue needs procrastinate (pip install procrastinate)"
        ) from e
    if ws.dialect != "postgresql" or ws.database is None:
        raise QueueError(
            f"{ws.where}: a job queue needs a PostgreSQL workspace; an SQLite one trains locally"
        )
    # The URL without password: libpq finds it (PGPASSWORD, ~/.pgpass), as for the workspace.
    if sync:
        connector: Any = procrastinate.SyncPsycopgConnector(conninfo=ws.database)
    else:
        connector = procrastinate.PsycopgConnector(conninfo=ws.database)
    return procrastinate.App(connector=connector)


def install(ws: Workspace) -> None:
    """The queue's tables in the workspace's database, once (`job_queue.install`)."""
    if job_queue.installed(ws):
        return
    from procrastinate.schema import SchemaManager

    job_queue.install(ws, SchemaManager.get_schema())


def defer(ws: Workspace, job_id: int, request: dict[str, Any]) -> int:
    """Queue workspace job `job_id` (`request`: its JobRequest's fields but the folders, which
    are the worker's); returns the task's id."""
    install(ws)
    app = queue_app(ws, sync=True)
    try:
        with app.open():
            return app.configure_task(TASK, queue=QUEUE).defer(job_id=job_id, request=request)
    except Exception as e:  # procrastinate's and psycopg's errors: say which job and why
        raise job_queue.failure(ws, f"queue training job {job_id} (a reviewer's right)", e) from e


def defer_join(
    ws: Workspace, job_id: int, request: dict[str, Any], endpoint: str, node_rank: int, nnodes: int
) -> int:
    """Ask another worker to run node `node_rank` of job `job_id`'s `nnodes`, meeting node 0 at
    its c10d `endpoint`; returns the task's id. Ahead of new jobs (priority 1): a free worker
    joins a job that waits for it before it starts one of its own."""
    app = queue_app(ws, sync=True)
    try:
        with app.open():
            task = app.configure_task(JOIN_TASK, queue=QUEUE, priority=1)
            return task.defer(
                job_id=job_id, request=request, endpoint=endpoint, node_rank=node_rank,
                nnodes=nnodes,
            )  # fmt: skip
    except Exception as e:
        raise job_queue.failure(ws, f"ask a worker to join job {job_id}", e) from e


def cancel(ws: Workspace, job_id: int) -> bool:
    """Cancel a job still waiting, or ask the worker running it to stop it; False when its task
    is neither waiting nor running."""
    found = job_queue.queued(ws, job_id)
    if found is None or found.status not in ("todo", "doing"):
        return False
    return cancel_task(ws, found.task_id, f"job {job_id}")


def cancel_task(ws: Workspace, task_id: int, what: str) -> bool:
    """Cancel a queued task still waiting, or ask the worker doing it to abort it."""
    app = queue_app(ws, sync=True)
    try:
        with app.open():
            return app.job_manager.cancel_job_by_id(task_id, abort=True)
    except Exception as e:
        raise job_queue.failure(ws, f"cancel {what}", e) from e
