"""The training queue with the team's own logins, made by `workspace grant`, against a real
PostgreSQL: a reviewer queues, follows and cancels a job; a worker logged in as a `worker`
registers its version from its own folder (its own machine); an annotator follows jobs but may
not queue or cancel one; a login without the role is refused in words; and resuming a job that
ran on the worker queues it again for the worker, which carries on from its checkpoint."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from medviewer.cli import main
from medviewer.training.jobs import JobManager
from medviewer.training.protocol import Batch, Ended, Epoch, Event
from medviewer.workspace import PermissionDenied, Workspace, job_queue
from medviewer.workspace.job_table import JobRecord
from tests.training.queue_helpers import (
    Team,
    make_team,
    quick_heartbeat,  # noqa: F401 (an autouse fixture)
    start_worker,
    stop_workers,
)
from tests.workspace.pg_server import PostgresServer

OPTIONS = {"epochs": 1, "batch_size": 2, "device": "cpu", "augment": False, "patience": 0}
LOGINS = {"qrev": "reviewer", "qann": "annotator", "qwrk": "worker", "qnone": None}

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Team:
    """The administrator's workspace (test_ddp's approved slices and model v1), a login per
    role granted by `medviewer workspace grant` (which also sets up the queue), and a folder
    per login whose workspace.json names that login."""
    root = tmp_path_factory.mktemp("queue-roles")
    make_team(root, postgres_server, LOGINS)
    return Team(root)


@pytest.fixture
def worker(team: Team, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """`medviewer worker` logged in as the worker login, in its own folder."""
    proc = start_worker(team.folder("ws"), tmp_path / "worker.log", folder=team.folder("qwrk"))
    yield proc
    stop_workers(team.folder("ws"), [proc])


class Heard:
    """A job manager's listener: every event, and a flag per kind awaited."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.epoch = threading.Event()
        self.batch = threading.Event()

    def __call__(self, _: int, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Epoch):
            self.epoch.set()
        if isinstance(event, Batch):
            self.batch.set()


def cancelled_after_an_epoch(jobs: JobManager, heard: Heard) -> JobRecord:
    """A long job started, and cancelled once an epoch was heard: it has a checkpoint."""
    job = jobs.start("lesion", **{**OPTIONS, "epochs": 300})
    assert heard.epoch.wait(180), heard.events
    jobs.cancel(job.id)
    assert jobs.wait(job.id, timeout=60).state == "cancelled"
    return job


def test_a_reviewer_queues_a_job_the_worker_login_runs_and_registers(
    team: Team, worker: subprocess.Popen
) -> None:
    heard = Heard()
    with Workspace.open(team.folder("qrev")) as ws:
        jobs = JobManager(ws, on_event=heard)
        job = jobs.start("lesion", **OPTIONS)
        assert job.state == "queued"
        ended = jobs.wait(job.id, timeout=180)
        assert ended.state == "finished", (ended.message, jobs.events(job.id))
        new = ended.progress["version"]
        assert new in [m.version for m in ws.models.list("lesion")]
    assert heard.events[-1] == Ended(state="finished", message=f"version {new} registered")
    # Run on the worker's machine (its folder), not the reviewer's.
    assert (team.folder("qwrk") / "jobs" / str(job.id) / "stdout.log").is_file()
    assert not (team.folder("qrev") / "jobs" / str(job.id)).exists()
    with Workspace.open(team.folder("qann")) as ws:  # an annotator reads how it went
        assert JobManager(ws).events(job.id) == heard.events


def test_an_annotator_may_follow_but_not_queue_or_cancel_and_a_reviewer_cancels(
    team: Team, worker: subprocess.Popen
) -> None:
    with Workspace.open(team.folder("qann")) as ws:
        with pytest.raises(PermissionDenied, match=r"qann may not queue training job \d+ \(a re"):
            JobManager(ws, queue=True).start("lesion", **OPTIONS)
        # The queue's grants gave annotators nothing beyond their role.
        first = ws.models.list("lesion")[0].version
        with pytest.raises(PermissionDenied, match="qann may not activate model lesion"):
            ws.models.activate("lesion", first)
    heard = Heard()
    with Workspace.open(team.folder("qrev")) as ws:
        jobs = JobManager(ws, on_event=heard)
        job = jobs.start("lesion", **{**OPTIONS, "epochs": 300})
        assert heard.batch.wait(180), heard.events
        with Workspace.open(team.folder("qann")) as other:
            watching = JobManager(other)  # follows the reviewer's job, as the app does
            with pytest.raises(PermissionDenied, match=rf"qann may not cancel job {job.id}"):
                watching.cancel(job.id)
            watching.close()
        jobs.cancel(job.id)
        ended = jobs.wait(job.id, timeout=60)
        assert ended.state == "cancelled", ended.message
        assert job_queue.queued(ws, job.id).status == "aborted"


def test_a_login_without_the_worker_role_is_refused_in_words(
    team: Team, capsys: pytest.CaptureFixture[str]
) -> None:
    said = {
        "qann": "qann may not take training jobs: it needs the worker role",
        "qnone": "qnone may not open this workspace: it has no role here",
    }
    for login, refusal in said.items():
        assert main(["worker", "--workspace", str(team.folder(login))]) == 2
        err = capsys.readouterr().err
        assert refusal in err and "workspace grant" in err and "Traceback" not in err, err


def test_resuming_a_job_that_ran_on_the_worker_queues_it_for_the_worker(
    team: Team, worker: subprocess.Popen
) -> None:
    heard = Heard()
    with Workspace.open(team.folder("qrev")) as ws:
        jobs = JobManager(ws, on_event=heard)
        job = cancelled_after_an_epoch(jobs, heard)
        first_task = job_queue.queued(ws, job.id).task_id
        before = [e.epoch for e in heard.events if isinstance(e, Epoch)]
        heard.events.clear()
        heard.epoch.clear()

        resumed = jobs.resume(job.id)
        assert (resumed.state, resumed.message) == ("queued", "queued for a worker")
        assert job_queue.queued(ws, job.id).task_id != first_task  # a new task for the worker
        assert heard.epoch.wait(180), heard.events
        jobs.cancel(job.id)
        assert jobs.wait(job.id, timeout=60).state == "cancelled"
    kinds = [e.kind for e in heard.events]
    assert kinds[0] == "start" and kinds.count("ended") == 1  # not the run before's end
    after = [e.epoch for e in heard.events if isinstance(e, Epoch)]
    assert after[0] > before[0]  # carried on from its checkpoint, not from the first epoch
    assert not (team.folder("qrev") / "jobs" / str(job.id)).exists()  # never run here
