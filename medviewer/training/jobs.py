"""Training jobs as separate processes: started with a JSON job file, tailed for progress,
stopped by killing their whole process tree, recorded in `ws.jobs` so a restarted app shows how
each one ended (MONAI Label's train jobs work the same way).

The trainer's stdout goes to `jobs/<id>/stdout.log` and a reader thread per job tails it. A file
rather than a pipe means the training outlives an app that crashes or closes without cancelling
it: the next JobManager on the workspace finds it still running and follows it again.

Listeners `on_event(job_id, event)` are called on the reader thread with every event the trainer
prints (the types of `medviewer.training.protocol`: Start, Batch, Epoch, Done, Error), in order,
and last with one Ended once the job's final state is saved. No Qt here: the GUI bridges these
calls to signals.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medviewer.processes import (
    LaunchError,
    Ranks,
    group_alive,
    is_our_job,
    launch_module,
    new_group_options,
    signal_tree,
    tethered,
)
from medviewer.training import queue as job_queue_app
from medviewer.training.errors import TrainingError
from medviewer.training.protocol import (
    JOB_FILE,
    Batch,
    Done,
    Ended,
    Epoch,
    Error,
    Event,
    JobRequest,
    Start,
    parse_event,
    read_result,
)
from medviewer.workspace import job_queue
from medviewer.workspace.errors import PermissionDenied, WorkspaceError
from medviewer.workspace.job_table import JobRecord

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

Listener = Callable[[int, Event], None]
KIND = "training"
STDOUT, STDERR = "stdout.log", "stderr.log"
TRAINER_MODULE = "medviewer.training"
OUT_OF_MEMORY = "training ran out of memory; try a smaller batch size"
# A job recorded as running whose process is gone: whoever ran it (the app, `medviewer train`)
# closed, crashed or was killed before it could record how the job ended.
APP_DIED = "interrupted: its process ended while nobody was there to record how"
# A queued job whose worker stopped beating (killed, the machine lost) before it ended it.
WORKER_DIED = "interrupted: the worker running it stopped before it could record how it ended"
_OOM_SIGNS = ("out of memory", "can't allocate memory", "signal 9 (sigkill)", "memoryerror")
_POLL = 0.05  # seconds between looks at a quiet log
# torchrun's summary of the rank that failed first (its "Root Cause" on stderr).
_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)

log = logging.getLogger(__name__)


class JobError(WorkspaceError):
    """A training job cannot start or be stopped (one already runs for the model, ...)."""


@dataclass
class _JobRun:
    job_id: int
    model: str
    folder: Path
    pid: int
    proc: subprocess.Popen | None  # None for a job adopted after a restart
    offset: int = 0
    cancelled: bool = False
    cancel_message: str = "cancelled"
    killer: threading.Thread | None = None
    reader: threading.Thread | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    lines: deque = field(default_factory=lambda: deque(maxlen=200))  # non-JSON output
    start: Start | None = None
    done: Done | None = None
    error: Error | None = None
    remote: bool = False  # queued: a worker runs it, its events come from job_events


class JobManager:
    """Every training job of one workspace; the only holder of their state besides `ws.jobs`."""

    def __init__(
        self,
        ws: Workspace,
        *,
        command: Sequence[str] | None = None,
        on_event: Listener | None = None,
        grace: float = 5.0,
        throttle: float = 0.5,
        queue: bool | None = None,
        tether: bool = False,
    ) -> None:
        self.ws = ws
        # True (the worker's manager): a job's processes end when this process dies, even by
        # SIGKILL (`processes.tethered`); the app's jobs outlive it instead (see the top).
        self.tether = tether
        # Where start() runs a job: True queues it for `medviewer worker` (PostgreSQL only),
        # False runs it here (the worker's own manager), None queues it while a worker of the
        # workspace beats and runs it here otherwise (SQLite: always here).
        self.queue = queue
        # The trainer's command; by default `processes.launch_module` builds it for each job's
        # ranks. A command given here (tests) is used for every job as it is.
        self.command = list(command) if command else None
        self.grace = grace  # seconds between SIGTERM and SIGKILL on cancel
        self.throttle = throttle  # at most one batch progress write per this many seconds
        self._listeners: list[Listener] = [on_event] if on_event else []
        self._runs: dict[int, _JobRun] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.recover()

    # -- public ------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def folder(self, job_id: int) -> Path:
        return job_folder(self.ws, job_id)

    def start(self, model: str, ranks: Ranks | None = None, **options: Any) -> JobRecord:
        """Write the job file and start the trainer on it; one job per model at a time.
        `options` are those of `JobRequest` (see protocol.OPTIONS), checked before anything
        starts. `ranks`: torchrun's processes (one per GPU, or CPU ranks; on several nodes,
        this one is node 0 and each other node runs `medviewer train --join` on the job);
        by default one process. Queued (see `queue`), the worker's ranks apply instead."""
        try:
            request = JobRequest.create(self.ws.root, model, **options)
            self._command(ranks)
        except (TrainingError, LaunchError) as e:
            raise JobError(str(e)) from e
        if self._closing.is_set():
            raise JobError("this job manager is closed; open the workspace's jobs again")
        queued = self._queued()
        with self._lock:
            busy = [
                j
                for state in ("running", "queued")
                for j in self.ws.jobs.list(state)
                if j.model_name == model and as_it_stands(self.ws, j).state == state
            ]
            if busy:
                raise JobError(
                    f"model {model} is already training (job {busy[0].id}); wait for "
                    "it to end or cancel it first"
                )
            job = self.ws.jobs.create(KIND, model)
            if queued:
                return self._defer(job, request.to_dict())
            folder = self.folder(job.id)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                request = JobRequest.create(self.ws.root.resolve(), model, folder, **options)
                request.write(folder / JOB_FILE)
                return self._launch(job.id, model, folder, offset=0, ranks=ranks)
            except OSError as e:
                message = f"{folder}: cannot start the training: {e.strerror or e}"
                self.ws.jobs.update(job.id, state="failed", message=message)
                raise JobError(message) from e

    def run_queued(self, job_id: int, request: dict[str, Any], ranks: Ranks) -> JobRecord:
        """Run a job another machine queued (the worker's side): its job file written here,
        in this workspace's `jobs/<id>`, and started on `ranks` as a local job."""
        with self._lock:
            job = self.ws.jobs.get(job_id)
            if job.state != "queued":
                raise JobError(f"job {job_id} is {job.state}, not waiting in the queue")
            folder = self.folder(job_id)
            try:
                checked = write_queued_request(self.ws, job_id, request)
                out = folder / STDOUT  # a resumed job's log holds the runs before: not again
                offset = out.stat().st_size if out.exists() else 0
                return self._launch(job_id, checked.model, folder, offset, ranks)
            except (OSError, TrainingError) as e:
                message = f"{folder}: cannot start the queued training: {e}"
                self.ws.jobs.update(job_id, state="failed", message=message)
                raise JobError(message) from e

    def end_queued(self, job_id: int, state: str, message: str) -> JobRecord:
        """End a queued job without running it (the worker's side: the other nodes it needs
        never came, or it was cancelled while waiting for them); its listeners hear Ended."""
        self._save(job_id, state=state, message=message)
        self._tell(job_id, Ended(state=state, message=message))
        return self.ws.jobs.get(job_id)

    def resume(self, job_id: int, ranks: Ranks | None = None) -> JobRecord:
        """Start a failed or cancelled job again on its run folder; the trainer carries on from
        the last epoch it saved there (on any number of ranks: a checkpoint does not depend on
        them)."""
        try:
            self._command(ranks)
        except LaunchError as e:
            raise JobError(str(e)) from e
        with self._lock:
            job = self.ws.jobs.get(job_id)
            if job.state not in ("failed", "cancelled"):
                raise JobError(
                    f"job {job_id} is {job.state}; only a failed or cancelled job can be resumed"
                )
            busy = [j for j in self.ws.jobs.list("running") if j.model_name == job.model_name]
            if busy:
                raise JobError(f"model {job.model_name} is already training (job {busy[0].id})")
            ran = job_queue.queued(self.ws, job_id)
            if ran is not None and self._queued():  # a worker's job: its checkpoint is there
                return self._defer(job, ran.request, resumed=True)
            folder = self.folder(job_id)
            if not (folder / JOB_FILE).is_file():
                if ran is not None:
                    raise JobError(
                        f"job {job_id} ran on a worker; resume it while a worker runs "
                        "(`medviewer worker`)"
                    )
                raise JobError(f"{folder / JOB_FILE}: the job file is gone; start a new job")
            out = folder / STDOUT
            offset = out.stat().st_size if out.exists() else 0
            try:
                return self._launch(job_id, job.model_name or "", folder, offset, ranks)
            except OSError as e:
                raise JobError(f"{folder}: cannot start the training: {e.strerror or e}") from e

    def cancel(self, job_id: int, message: str = "cancelled") -> None:
        """SIGTERM to the job's process group, SIGKILL after `grace` seconds if any of it is
        left. Returns at once; the job becomes "cancelled" (with `message`) when its
        processes are gone."""
        run = self._runs.get(job_id)
        if run is None or run.ended.is_set():
            state = self.ws.jobs.get(job_id).state
            raise JobError(f"job {job_id} is {state}, not running in this app")
        with self._lock:
            if run.cancelled:
                return
            run.cancelled = True
            run.cancel_message = message
            if run.remote:  # the worker stops it (procrastinate's abort) and reports the end
                try:
                    job_queue_app.cancel(self.ws, job_id)
                except WorkspaceError as e:
                    run.cancelled = False
                    if isinstance(e, PermissionDenied):
                        raise
                    raise JobError(str(e)) from e
                return
            run.killer = threading.Thread(
                target=self._kill, args=(run,), name=f"job-{job_id}-cancel", daemon=True
            )
            run.killer.start()

    def wait(self, job_id: int, timeout: float | None = None) -> JobRecord:
        """Block until the job has ended (TimeoutError after `timeout` seconds)."""
        run = self._runs.get(job_id)
        if run is not None and not run.ended.wait(timeout):
            raise TimeoutError(f"job {job_id} still running after {timeout} s")
        return self.ws.jobs.get(job_id)

    def get(self, job_id: int) -> JobRecord:
        return self.ws.jobs.get(job_id)

    def jobs(self, model: str | None = None) -> list[JobRecord]:
        """Training jobs, oldest first."""
        return [
            j
            for j in self.ws.jobs.list()
            if j.kind == KIND and (model is None or j.model_name == model)
        ]

    def events(self, job_id: int) -> list[Event]:
        """Every JSON event the job printed, read back from its log (e.g. to redraw the loss
        curve of a job that ran before a restart)."""
        path = self.folder(job_id) / STDOUT
        if not path.exists():  # run by a worker elsewhere: what it streamed back
            return [
                e
                for _, line in job_queue.events_after(self.ws, job_id)
                if (e := parse_event(line)) is not None
            ]
        with open(path, encoding="utf-8", errors="replace") as fp:
            return [e for e in map(parse_event, fp) if e is not None]

    def output(self, job_id: int) -> list[str]:
        """The latest lines the trainer printed that are not events (warnings, prints)."""
        run = self._runs.get(job_id)
        return list(run.lines) if run else []

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Stop following the jobs; with cancel=True kill them first and wait for the end.
        Jobs left running keep going and the next JobManager on the workspace follows them."""
        if cancel:
            for job_id, run in list(self._runs.items()):
                if not run.ended.is_set():
                    try:
                        self.cancel(job_id)
                    except JobError:
                        pass  # it ended meanwhile
            for run in list(self._runs.values()):
                run.ended.wait(timeout)
        self._closing.set()
        for run in list(self._runs.values()):
            if run.reader is not None:
                run.reader.join(1.0)

    def recover(self) -> list[JobRecord]:
        """Settle jobs a previous app left "running": follow those still alive, save how the
        rest ended (as_it_stands)."""
        settled = []
        for job in self.ws.jobs.list("running") + self.ws.jobs.list("queued"):
            if job.kind != KIND or job.id in self._runs:
                continue
            now = as_it_stands(self.ws, job)
            remote = job_queue.queued(self.ws, job.id) is not None
            if now.state == job.state and remote:
                if self.queue is not False:  # the app follows it; a worker takes it instead
                    self._watch(_JobRun(job.id, job.model_name or "", self.folder(job.id), 0,
                                        None, remote=True))  # fmt: skip
                continue
            if now.state == job.state:  # still running
                folder = self.folder(job.id)
                self._follow(_JobRun(job.id, job.model_name or "", folder, job.pid, None))
                continue
            settled.append(
                self.ws.jobs.update(
                    job.id, state=now.state, progress=now.progress, message=now.message
                )
            )
        return settled

    # -- the queue ---------------------------------------------------------------------

    def _queued(self) -> bool:
        """Does start() queue its job (see `queue`)?"""
        if self.queue is None:
            return self.ws.dialect == "postgresql" and job_queue.live_workers(self.ws) > 0
        if self.queue and self.ws.dialect != "postgresql":
            raise JobError(f"{self.ws.where}: only a PostgreSQL workspace has a job queue")
        return self.queue

    def _defer(self, job: JobRecord, request: dict[str, Any], resumed: bool = False) -> JobRecord:
        """Queue the job for a worker (`request`: its JobRequest's fields), new or `resumed`
        (the worker carries on from the checkpoint in its `jobs/<id>`)."""
        fields = {k: v for k, v in request.items() if k not in ("workspace", "run_dir")}
        if resumed:  # queued again; as a new job, before a worker starts it
            self.ws.jobs.update(job.id, state="queued", progress={}, message="queued for a worker")
        else:
            self.ws.jobs.update(job.id, message="queued for a worker")
        try:
            job_queue_app.defer(self.ws, job.id, fields)
        except WorkspaceError as e:
            self.ws.jobs.update(job.id, state="failed", message=str(e))
            if isinstance(e, PermissionDenied):  # this login's role may not (roles.py)
                raise
            raise JobError(str(e)) from e
        self._watch(
            _JobRun(job.id, job.model_name or "", self.folder(job.id), 0, None, remote=True)
        )
        return self.ws.jobs.get(job.id)

    def _watch(self, run: _JobRun) -> None:
        # Its events start after the last Ended row: those before are of runs before a resume.
        ends = [
            row_id
            for row_id, line in job_queue.events_after(self.ws, run.job_id)
            if isinstance(parse_event(line), Ended)
        ]
        run.offset = max(ends, default=0)
        self._runs[run.job_id] = run
        run.reader = threading.Thread(
            target=self._follow_remote, args=(run,), name=f"job-{run.job_id}-watch", daemon=True
        )
        run.reader.start()

    def _follow_remote(self, run: _JobRun) -> None:
        """Tell the listeners the events a worker writes for the job, until its Ended; a job
        whose worker died (as_it_stands) or whose task was cancelled before it started ends
        here, saved as it stands."""
        after, final_seen = run.offset, False
        while not self._closing.is_set():
            try:
                rows = job_queue.events_after(self.ws, run.job_id, after)
                for row_id, line in rows:
                    after = row_id
                    event = parse_event(line)
                    if isinstance(event, Ended):
                        run.ended.set()
                        self._tell(run.job_id, event)
                        return
                    if event is not None:
                        self._tell(run.job_id, event)
                if rows:
                    continue
                job = self.ws.jobs.get(run.job_id)
                now = as_it_stands(self.ws, job)
                if now.state != job.state:
                    self._save(run.job_id, state=now.state, message=now.message,
                               progress=now.progress)  # fmt: skip
                if now.state not in ("queued", "running"):
                    if final_seen or now.state != job.state:  # no Ended is coming
                        run.ended.set()
                        self._tell(run.job_id, Ended(state=now.state, message=now.message))
                        return
                    final_seen = True  # ended: its Ended row may be on its way
            except WorkspaceError as e:  # the server is unreachable a moment: look again
                log.warning("job %s: cannot read its events: %s", run.job_id, e)
            time.sleep(_POLL * 4)
        run.ended.set()

    # -- processes ---------------------------------------------------------------------

    def _command(self, ranks: Ranks | None, folder: Path | None = None) -> list[str]:
        if ranks is not None and folder is not None:
            ranks = replace(ranks, rdzv_id=rendezvous_id(folder))
        return self.command or launch_module(TRAINER_MODULE, ranks)

    def _launch(
        self, job_id: int, model: str, folder: Path, offset: int, ranks: Ranks | None = None
    ) -> JobRecord:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [*self._command(ranks, folder), str(folder / JOB_FILE)]
        if self.tether:  # its tree ended before _kill's SIGKILL reaches the group
            command = tethered(command, self.grace / 2)
        with open(folder / STDOUT, "ab") as out, open(folder / STDERR, "wb") as err:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                **new_group_options(),
            )
        # Recorded before the reader starts, so a job that ends at once cannot be overwritten.
        job = self.ws.jobs.update(
            job_id, state="running", pid=proc.pid, progress={}, message="starting"
        )
        self._follow(_JobRun(job_id, model, folder, proc.pid, proc, offset=offset))
        return job

    def _follow(self, run: _JobRun) -> None:
        self._runs[run.job_id] = run
        run.reader = threading.Thread(
            target=self._read, args=(run,), name=f"job-{run.job_id}-reader", daemon=True
        )
        run.reader.start()

    def _alive(self, run: _JobRun) -> bool:
        if run.proc is not None:
            return run.proc.poll() is None
        return is_our_job(run.pid, run.folder / JOB_FILE)

    def _kill(self, run: _JobRun) -> None:
        signal_tree(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            if not self._alive(run) and not group_alive(run.pid):
                return
            time.sleep(_POLL)
        signal_tree(run.pid, getattr(signal, "SIGKILL", signal.SIGTERM))

    # -- the reader thread ---------------------------------------------------------------

    def _read(self, run: _JobRun) -> None:
        try:
            self._tail(run)
        except OSError as e:  # the log went missing: still wait for the end and record it
            log.warning("job %s: cannot read %s: %s", run.job_id, run.folder / STDOUT, e)
            while self._alive(run) and not self._closing.is_set():
                time.sleep(_POLL)
        if self._closing.is_set():
            run.ended.set()  # nobody waits on a closed manager
            return  # detached: the job runs on, the next JobManager follows it
        if run.proc is not None:
            run.proc.wait()
        if run.killer is not None:
            run.killer.join()
        elif run.proc is not None:
            signal_tree(run.pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # stragglers
        state, message, progress = self._outcome(run)
        self._save(run.job_id, state=state, message=message, progress=progress)
        run.ended.set()
        self._tell(run.job_id, Ended(state=state, message=message))

    def _tail(self, run: _JobRun) -> None:
        """Follow stdout.log until the process has exited and every line is handled."""
        last_write, pending = 0.0, None
        with open(run.folder / STDOUT, "rb") as fp:
            fp.seek(run.offset)
            buffer = b""
            while not self._closing.is_set():
                alive = self._alive(run)  # before reading: nothing is written after the exit
                chunk = fp.read()
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                if not alive:
                    lines.append(buffer)
                for raw in lines:
                    line = raw.decode("utf-8", "replace").strip()
                    event = parse_event(line)
                    if event is None:
                        if line:
                            run.lines.append(line)
                        continue
                    pending = self._progress(run, event) or pending
                    if pending is not None and not isinstance(event, Batch):
                        last_write, pending = self._flush(run, pending)
                    self._tell(run.job_id, event)
                if pending is not None and time.monotonic() - last_write >= self.throttle:
                    last_write, pending = self._flush(run, pending)  # batch progress, throttled
                if not alive:
                    return
                if not chunk:
                    time.sleep(_POLL)

    def _flush(self, run: _JobRun, fields: dict[str, Any]) -> tuple[float, None]:
        self._save(run.job_id, **fields)
        return time.monotonic(), None

    def _progress(self, run: _JobRun, event: Event) -> dict[str, Any] | None:
        """What of this event goes into ws.jobs (None: nothing)."""
        if isinstance(event, Start):
            run.start = event
            return {"progress": event.to_dict(), "message": "training started"}
        if isinstance(event, Batch):
            epochs = run.start.epochs if run.start else None
            return {"progress": {"epochs": epochs, **event.to_dict()}}
        if isinstance(event, Epoch):
            return {
                "progress": event.to_dict(),
                "message": f"epoch {event.epoch} of {event.epochs}",
            }
        if isinstance(event, Done):
            run.done = event
        elif isinstance(event, Error):
            run.error = event
        return None

    def _outcome(self, run: _JobRun) -> tuple[str, str, dict[str, Any] | None]:
        code = run.proc.returncode if run.proc is not None else None
        if run.done is not None and code in (0, None) and not run.error:
            return "finished", run.done.message, run.done.to_dict()
        if run.cancelled:
            return "cancelled", run.cancel_message, None
        stderr = _tail(run.folder / STDERR)
        said = run.error.message if run.error else ""
        error = run.error.to_dict() if run.error else None
        if not said and code is not None and (lost := rank_failure(stderr)):
            return "failed", lost, None  # under torchrun: another rank failed first
        sigkill = -getattr(signal, "SIGKILL", 9)
        if code == sigkill or any(s in (said + stderr).lower() for s in _OOM_SIGNS):
            return "failed", OUT_OF_MEMORY, error
        if said:
            return "failed", str(said), error
        if code is None:  # adopted after a restart: no exit code to read
            result = _result(run.folder)
            if result is not None:
                return "finished", result.message, result.to_dict()
            return "failed", APP_DIED + (f": {_last_lines(stderr)}" if stderr else ""), None
        detail = _last_lines(stderr) or _last_lines("\n".join(run.lines)) or "no error output"
        return "failed", f"{stopped_unexpectedly(code)}: {detail}", None

    def _save(self, job_id: int, **fields: Any) -> None:
        try:
            self.ws.jobs.update(job_id, **fields)
        except WorkspaceError as e:  # a busy disk must not stop the reader
            log.warning("job %s: could not record progress: %s", job_id, e)

    def _tell(self, job_id: int, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(job_id, event)
            except Exception:
                log.exception("job %s: listener %r failed", job_id, listener)


# -- how a job stands ----------------------------------------------------------------------


def job_folder(ws: Workspace, job_id: int) -> Path:
    """`jobs/<id>` in the workspace: the job file, logs and (for the app's jobs) the run."""
    return ws.root.resolve() / "jobs" / str(job_id)


def write_queued_request(
    ws: Workspace, job_id: int, request: dict[str, Any], name: str = JOB_FILE
) -> JobRequest:
    """A queued job's request as this machine runs it, written to its `jobs/<id>/<name>` (a
    joining node's own name: the folder may be node 0's too, on one machine or a shared
    mount): the workspace and run folder are this machine's, the rest as queued (checked)."""
    folder = job_folder(ws, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in request.items() if k not in ("workspace", "run_dir")}
    checked = JobRequest.from_dict(
        {**fields, "workspace": str(ws.root.resolve()), "run_dir": str(folder)}
    )
    checked.write(folder / name)
    return checked


def rendezvous_id(folder: Path) -> str:
    """The c10d rendezvous id of a job's nodes: its folder's name (`jobs/<id>`), which every
    node reaching the workspace sees alike."""
    return f"job-{folder.name}"


def as_it_stands(ws: Workspace, job: JobRecord) -> JobRecord:
    """The job as it really stands. One recorded as queued or running whose process is gone
    (not alive, or alive but running something else now) has ended: finished when its run
    folder holds a result, else failed (APP_DIED). Reads only: `medviewer status` shows this,
    JobManager.recover saves it."""
    if job.kind != KIND or job.state not in ("queued", "running"):
        return job
    folder = job_folder(ws, job.id)
    queued = job_queue.queued(ws, job.id)
    if queued is not None:  # a worker's job: its task and the worker's heartbeat tell
        if queued.status == "todo" or (queued.status == "doing" and queued.worker_alive):
            return job
        if queued.status == "cancelled":
            return replace(job, state="cancelled", message="cancelled before a worker took it")
        result = _result(folder)
        if result is not None:
            return replace(job, state="finished", progress=result.to_dict(), message=result.message)
        return replace(job, state="failed", message=WORKER_DIED)
    if job.state == "running" and job.pid and is_our_job(job.pid, folder / JOB_FILE):
        return job
    result = _result(folder)
    if result is not None:
        return replace(job, state="finished", progress=result.to_dict(), message=result.message)
    return replace(job, state="failed", message=APP_DIED)


def stopped_unexpectedly(code: int) -> str:
    """Why a trainer that left no result and no error event ended, from its exit code."""
    if code < 0:
        try:
            how = f"killed by signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}" if code else "it ended without a result"
    return f"training stopped unexpectedly ({how})"


def rank_failure(stderr: str) -> str | None:
    """Why a torchrun job ended, from the rank torchrun names as the first to fail (its
    "Root Cause" on stderr) and what that rank printed (`training rank R: ...`); None when
    stderr holds no such summary (a job of one process)."""
    found = _ROOT_CAUSE.search(stderr)
    if found is None:
        return None
    rank, code = found.group(1), int(found.group(2))
    said = re.findall(rf"^training rank {rank}: (.*)$", stderr, re.M)
    if said:
        how = f"failed: {said[-1]}"
    else:
        how = stopped_unexpectedly(code).removeprefix("training ")
    message = f"training rank {rank} {how} and every rank of the job stopped with it"
    if code == -getattr(signal, "SIGKILL", 9):
        message += "; if nothing killed it, it ran out of memory: try a smaller batch size"
    return message


def _result(folder: Path) -> Done | None:
    """The result a job's trainer saved in its run folder: the job folder itself for the
    app's jobs, the job file's run_dir (`run/`) for those of `medviewer train`."""
    try:
        run_dir = JobRequest.read(folder / JOB_FILE).run_dir
    except TrainingError:  # no job file (any more): look in the job folder
        run_dir = None
    return read_result(Path(run_dir) if run_dir else folder)


# -- helpers -------------------------------------------------------------------------------


def _tail(path: Path, size: int = 16384) -> str:
    try:
        with open(path, "rb") as fp:
            fp.seek(max(0, fp.seek(0, os.SEEK_END) - size))
            return fp.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _last_lines(text: str, n: int = 5) -> str:
    return "\n".join([line for line in text.splitlines() if line.strip()][-n:])
