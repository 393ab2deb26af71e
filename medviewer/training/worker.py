"""`medviewer worker`: the GPU machine's loop over a PostgreSQL workspace's queued training
jobs (`training.queue`), each run by this machine's JobManager as a local job (torchrun over its
GPUs), its events written to `job_events` as they come for the app to follow, procrastinate's
abort turned into the job's own cancel.

A job on several nodes (`medviewer worker --nnodes N`): the worker that takes it is node 0; it
picks the c10d rendezvous endpoint (its advertised host, a free port) and defers a join task
per other node (`job_queue.JOIN_TASK`, ahead of new jobs); once other workers have taken them
all it starts its ranks, and each joiner runs its node's ranks (`train --join`'s command) on its
own copy of the job file. Node 0 alone records the job and streams its events; no joiner within
`join_timeout` seconds fails the job (NO_JOINER), never a hang.

The worker's training dies with it: SIGTERM/SIGINT cancel the running job before the worker
exits (procrastinate's shutdown abort, at once), and its processes are tethered
(`processes.tethered`) so a SIGKILLed worker's training ends too."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason

from medviewer.processes import (
    Ranks,
    launch_module,
    new_group_options,
    signal_tree,
    tethered,
)
from medviewer.training import queue as training_queue
from medviewer.training.jobs import (
    TRAINER_MODULE,
    JobManager,
    job_folder,
    rendezvous_id,
    stopped_unexpectedly,
    write_queued_request,
)
from medviewer.training.protocol import Event
from medviewer.training.queue import install, queue_app
from medviewer.workspace import job_queue
from medviewer.workspace.job_queue import JOIN_TASK, QUEUE, TASK

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

log = logging.getLogger(__name__)
_ABORT_POLL = 0.5  # seconds between the worker's looks for an abort request
_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when a job is stopped
JOIN_TIMEOUT_S = 120.0  # how long node 0 waits for the other nodes' workers by default
STOPPED = "cancelled: the worker running it was stopped"
NO_JOINER = (
    "no other worker joined within {timeout:g} s: this job runs on {nnodes} nodes (medviewer "
    "worker --nnodes {nnodes}); start `medviewer worker` on {others} more machine(s)"
)


class JoinError(RuntimeError):
    """This worker's node of a job on several nodes ended with an error (its task fails)."""


def run_worker(
    ws: Workspace,
    ranks: Ranks,
    *,
    name: str = "medviewer",
    nnodes: int = 1,
    host: str | None = None,
    join_timeout: float | None = None,
) -> None:
    """Take the workspace's training jobs one at a time until SIGINT/SIGTERM (which cancel the
    running one): each runs through a JobManager of this machine on `ranks` (torchrun over its
    GPUs, or one process), its events written to `job_events` as they come. With `nnodes` > 1
    each job runs on this worker and `nnodes - 1` others that join it, meeting at `host`
    (default: this machine's name); this worker also joins other workers' jobs."""
    install(ws)
    host = host or socket.gethostname()
    join_timeout = JOIN_TIMEOUT_S if join_timeout is None else join_timeout

    def stream(job_id: int, event: Event) -> None:
        try:
            job_queue.add_event(ws, job_id, event.to_json())
        except Exception:  # the job goes on; its state is still saved in ws.jobs
            log.exception("job %s: cannot record event %s", job_id, event.kind)

    manager = JobManager(ws, on_event=stream, queue=False, tether=True, grace=_GRACE)
    app = queue_app(ws, sync=False)

    @app.task(name=TASK, queue=QUEUE, pass_context=True)
    def train(context: Any, job_id: int, request: dict[str, Any]) -> str:
        job_ranks = ranks
        if nnodes > 1:
            gathered = _gather(ws, manager, context, job_id, request, ranks.nproc, nnodes,
                               host, join_timeout)  # fmt: skip
            if gathered is None:
                return "failed"
            job_ranks = gathered
        manager.run_queued(job_id, request, job_ranks)
        asked = threading.Event()
        while True:
            try:
                ended = manager.wait(job_id, timeout=_ABORT_POLL)
                break
            except TimeoutError:
                if not asked.is_set() and (why := context.abort_reason()):
                    asked.set()
                    manager.cancel(job_id, _stop_message(why))
        if asked.is_set() and ended.state == "cancelled":
            raise JobAborted(f"job {job_id} cancelled")
        return ended.state

    @app.task(name=JOIN_TASK, queue=QUEUE, pass_context=True)
    def join(
        context: Any,
        job_id: int,
        request: dict[str, Any],
        endpoint: str,
        node_rank: int,
        nnodes: int,
    ) -> str:
        job = ws.jobs.get(job_id)
        if job.state not in ("queued", "running"):
            return f"job {job_id} is {job.state}"  # node 0 gave up on it meanwhile
        folder, job_file = job_folder(ws, job_id), f"node-{node_rank}.json"
        write_queued_request(ws, job_id, request, job_file)
        rdzv, wait = rendezvous_id(folder), max(1, round(join_timeout))  # node 0 may never come
        node = Ranks(ranks.nproc, nnodes, node_rank, endpoint, rdzv, join_timeout=wait)
        command = tethered([*launch_module(TRAINER_MODULE, node), str(folder / job_file)],
                           _GRACE / 2)  # fmt: skip
        with open(folder / f"node-{node_rank}.log", "wb") as out:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, **new_group_options())  # fmt: skip
        log.info("job %s: node %s of %s at %s", job_id, node_rank, nnodes, endpoint)
        code = _run_node(proc, context)
        if code is None:
            raise JobAborted(f"job {job_id}: node {node_rank} stopped")
        if code != 0:
            raise JoinError(f"job {job_id}: node {node_rank} {stopped_unexpectedly(code)}")
        return "finished"

    try:
        app.run_worker(
            queues=[QUEUE],
            name=name,
            concurrency=1,  # one job at a time holds all of this machine's GPUs
            abort_job_polling_interval=_ABORT_POLL,
            update_heartbeat_interval=max(1.0, job_queue.STALE_S / 3),
            stalled_worker_timeout=job_queue.STALE_S,
            shutdown_graceful_timeout=0,  # SIGTERM/SIGINT: abort the running job at once
        )
    finally:
        manager.close()


def _gather(
    ws: Workspace,
    manager: JobManager,
    context: Any,
    job_id: int,
    request: dict[str, Any],
    nproc: int,
    nnodes: int,
    host: str,
    timeout: float,
) -> Ranks | None:
    """Node 0's side of a job on `nnodes`: a join task per other node, then wait until other
    workers have taken them all -> this node's ranks; None when the job ended instead (no
    joiner in `timeout` seconds: failed; cancelled meanwhile: JobAborted)."""
    endpoint = f"{host}:{_free_port()}"
    joins = [
        training_queue.defer_join(ws, job_id, request, endpoint, rank, nnodes)
        for rank in range(1, nnodes)
    ]
    manager.ws.jobs.update(job_id, message=f"waiting for {nnodes - 1} more worker(s) to join")
    deadline = time.monotonic() + timeout
    while "todo" in (status := [job_queue.task_status(ws, t) for t in joins]):
        why = context.abort_reason()
        if why or time.monotonic() > deadline:
            for task_id in joins:
                training_queue.cancel_task(ws, task_id, f"the join of job {job_id}")
            if why:
                manager.end_queued(job_id, "cancelled", _stop_message(why))
                raise JobAborted(f"job {job_id} cancelled")
            message = NO_JOINER.format(timeout=timeout, nnodes=nnodes, others=nnodes - 1)
            manager.end_queued(job_id, "failed", message)
            return None
        time.sleep(_ABORT_POLL)
    if status != ["doing"] * len(joins):  # taken, but that worker's node ended already
        rank = 1 + next(i for i, s in enumerate(status) if s != "doing")
        manager.end_queued(job_id, "failed", f"node {rank} of the job ended before it began "
                           f"(its worker's jobs/{job_id}/node-{rank}.log says why)")  # fmt: skip
        return None
    # torchrun's own wait for the nodes bounded too: a joiner that never reaches the endpoint
    return Ranks(nproc, nnodes, 0, endpoint, join_timeout=max(1, round(timeout)))


def _stop_message(why: AbortReason) -> str:
    """A job's message when its task was aborted: the worker stopping, or a cancel."""
    return STOPPED if why == AbortReason.SHUTDOWN else "cancelled"


def _run_node(proc: subprocess.Popen, context: Any) -> int | None:
    """Wait for a joining node's processes: their exit code, or None when the task was aborted
    (the job cancelled, the worker stopping), its tree stopped first."""
    while True:
        try:
            return proc.wait(timeout=_ABORT_POLL)
        except subprocess.TimeoutExpired:
            if context.should_abort():
                break
    signal_tree(proc.pid, signal.SIGTERM)  # the tether ends the tree, ranks included
    try:
        proc.wait(timeout=_GRACE)
    except subprocess.TimeoutExpired:
        signal_tree(proc.pid, signal.SIGKILL)
        proc.wait()
    return None


def _free_port() -> int:
    """A port free on this machine now, for node 0's c10d rendezvous store."""
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])
