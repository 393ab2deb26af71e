"""Training through the PostgreSQL job queue (procrastinate), against a real server: a job the
app's JobManager queues runs on a `medviewer worker` subprocess, its events reach the app's
listeners through `job_events`, its version is registered for everyone; the app cancels it;
a worker that dies leaves the job failed, not running forever; without a worker the job runs
locally as before."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medviewer.processes import signal_tree
from medviewer.training import queue as training_queue
from medviewer.training.jobs import WORKER_DIED, JobError, JobManager
from medviewer.training.protocol import Batch, Ended, Event
from medviewer.workspace import Workspace, job_queue
from medviewer.workspace.job_table import JobRecord
from tests.training.queue_helpers import (
    make_team,
    quick_heartbeat,  # noqa: F401 (an autouse fixture)
    start_worker,
    stop_workers,
)
from tests.workspace.pg_server import PostgresServer

OPTIONS = {"epochs": 1, "batch_size": 2, "device": "cpu", "augment": False, "patience": 0}

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")


@pytest.fixture(scope="module")
def team_ws(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Path:
    """One PostgreSQL workspace for the module (making one takes seconds): the approved 64x64
    slices and model v1 of test_ddp."""
    return make_team(tmp_path_factory.mktemp("team"), postgres_server, {})


@pytest.fixture
def worker(team_ws: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """`medviewer worker` on the workspace, started and stopped here."""
    proc = start_worker(team_ws, tmp_path / "worker.log")
    yield proc
    stop_workers(team_ws, [proc])


def versions(ws: Workspace) -> list[str]:
    return [m.version for m in ws.models.list("lesion")]


def test_a_queued_job_runs_on_the_worker_and_reports_to_the_app(
    team_ws: Path, worker: subprocess.Popen
) -> None:
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        before = versions(ws)
        jobs = JobManager(ws, on_event=lambda _, e: heard.append(e))
        job = jobs.start("lesion", **OPTIONS)
        assert job.state == "queued" and job.message == "queued for a worker"
        assert job_queue.queued(ws, job.id) is not None  # a procrastinate task carries it
        ended = jobs.wait(job.id, timeout=120)
        assert ended.state == "finished", (ended.message, jobs.events(job.id))
        new = ended.progress["version"]
        assert versions(ws) == [*before, new]  # registered, visible to every client
        streamed = [line for _, line in job_queue.events_after(ws, job.id)]
    kinds = [e.kind for e in heard]
    assert kinds[0] == "start" and kinds[-2:] == ["done", "ended"]
    assert kinds.count("epoch") == OPTIONS["epochs"] and "batch" in kinds
    assert heard[-1] == Ended(state="finished", message=f"version {new} registered")
    assert len(streamed) == len(heard)  # every event went through the database, in order
    with Workspace.open(team_ws) as ws:  # a restarted app sees how it ended, and its events
        again = JobManager(ws)
        assert again.get(job.id).state == "finished"
        assert [e.kind for e in again.events(job.id)][-1] == "done"


def long_job_training(
    ws: Workspace, heard: list[Event], wait: float = 120
) -> tuple[JobManager, JobRecord]:
    """A 300-epoch job queued by the app and training on the worker (its first batch heard
    within `wait` seconds); the events the app hears go to `heard`."""
    first_batch = threading.Event()

    def listen(_: int, event: Event) -> None:
        heard.append(event)
        if isinstance(event, Batch):
            first_batch.set()

    jobs = JobManager(ws, on_event=listen)
    job = jobs.start("lesion", **{**OPTIONS, "epochs": 300})
    assert first_batch.wait(wait), heard
    return jobs, job


def test_the_app_cancels_a_job_running_on_the_worker(
    team_ws: Path, worker: subprocess.Popen
) -> None:
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        before = versions(ws)
        jobs, job = long_job_training(ws, heard)
        jobs.cancel(job.id)
        ended = jobs.wait(job.id, timeout=60)
        assert ended.state == "cancelled", ended.message
        assert heard[-1] == Ended(state="cancelled", message="cancelled")
        assert versions(ws) == before
        assert job_queue.queued(ws, job.id).status == "aborted"  # procrastinate's record too


def test_a_worker_that_dies_leaves_the_job_failed(team_ws: Path, worker: subprocess.Popen) -> None:
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        jobs, job = long_job_training(ws, heard)
        trainer = ws.jobs.get(job.id).pid
        worker.kill()  # the GPU machine is lost: the worker and its training with it
        signal_tree(trainer, signal.SIGKILL)
        worker.wait()
        ended = jobs.wait(job.id, timeout=60)
        assert (ended.state, ended.message) == ("failed", WORKER_DIED)
        assert heard[-1] == Ended(state="failed", message=WORKER_DIED)


def test_a_job_a_worker_cannot_start_fails_with_the_reason(
    team_ws: Path, worker: subprocess.Popen
) -> None:
    with Workspace.open(team_ws) as ws:
        jobs = JobManager(ws)
        job = ws.jobs.create("training", "lesion")
        training_queue.defer(ws, job.id, {"model": "lesion", "epochs": 0})  # a corrupt request
        jobs.recover()  # the app follows it as after a restart
        ended = jobs.wait(job.id, timeout=60)
        assert ended.state == "failed"
        assert "cannot start the queued training" in ended.message and "epochs" in ended.message


def test_without_a_worker_the_job_runs_here(team_ws: Path) -> None:
    with Workspace.open(team_ws) as ws:
        jobs = JobManager(ws, grace=1)
        job = jobs.start("lesion", **{**OPTIONS, "epochs": 300})
        assert job.state == "running" and job.pid  # a trainer process of this machine
        assert job_queue.queued(ws, job.id) is None  # never queued
        jobs.cancel(job.id)
        assert jobs.wait(job.id, timeout=60).state == "cancelled"


def test_an_sqlite_workspace_has_no_queue(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        with pytest.raises(JobError, match="only a PostgreSQL workspace has a job queue"):
            JobManager(ws, queue=True).start("lesion", **OPTIONS)
        assert job_queue.queued(ws, 1) is None and job_queue.live_workers(ws) == 0
