"""`medviewer worker`: the GPU machine's loop over a PostgreSQL workspace's queued training
jobs (`training.queue`), each run by this machine's JobManager as a local job (torchrun over its
GPUs), its events written to `job_events` as they come for the app to follow, procrastinate's
abort turned into the job's own cancel."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from procrastinate.exceptions import JobAborted

from medviewer.processes import Ranks
from medviewer.training.jobs import JobManager
from medviewer.training.protocol import Event
from medviewer.training.queue import install, queue_app
from medviewer.workspace import job_queue
from medviewer.workspace.job_queue import QUEUE, TASK

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

log = logging.getLogger(__name__)
_ABORT_POLL = 0.5  # seconds between the worker's looks for an abort request


def run_worker(ws: Workspace, ranks: Ranks, *, name: str = "medviewer") -> None:
    """Take the workspace's training jobs one at a time until SIGINT/SIGTERM: each runs through
    a JobManager of this machine on `ranks` (torchrun over its GPUs, or one process), its
    events written to `job_events` as they come."""
    install(ws)

    def stream(job_id: int, event: Event) -> None:
        try:
            job_queue.add_event(ws, job_id, event.to_json())
        except Exception:  # the job goes on; its state is still saved in ws.jobs
            log.exception("job %s: cannot record event %s", job_id, event.kind)

    manager: JobManager = JobManager(ws, on_event=stream, queue=False)
    app = queue_app(ws, sync=False)

    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    def train(context: Any, job_id: int, request: dict[str, Any]) -> str:
        manager.run_queued(job_id, request, ranks)
        asked = threading.Event()
        while True:
            try:
                ended = manager.wait(job_id, timeout=_ABORT_POLL)
                break
            except TimeoutError:
                if not asked.is_set() and context.should_abort():
                    asked.set()
                    manager.cancel(job_id)
        if asked.is_set() and ended.state == "cancelled":
            raise JobAborted(f"job {job_id} cancelled")
        return ended.state

    try:
        app.run_worker(
            queues=[QUEUE],
            name=name,
            concurrency=1,  # one job at a time holds all of this machine's GPUs
            abort_job_polling_interval=_ABORT_POLL,
            update_heartbeat_interval=max(1.0, job_queue.STALE_S / 3),
            stalled_worker_timeout=job_queue.STALE_S,
        )
    finally:
        manager.close()
