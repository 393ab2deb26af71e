"""`medviewer worker` beyond one machine's job, against a real PostgreSQL and real worker
subprocesses: two workers run one job on two nodes (torchrun c10d on 127.0.0.1, 2 gloo ranks
each) to one registered version; a job whose second node never comes fails with the reason; a
worker stopped by SIGTERM cancels its job, and one killed by SIGKILL takes its training with it
(torchrun's ranks, each in a session of its own, included)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from medviewer.processes import Ranks, group_alive, launch_module, tethered
from medviewer.training.jobs import WORKER_DIED, JobManager
from medviewer.training.protocol import Ended, Event
from medviewer.training.worker import STOPPED
from medviewer.workspace import Workspace, job_queue
from tests.training.queue_helpers import quick_heartbeat, start_worker, stop_workers
from tests.training.test_queue import OPTIONS, long_job_training, team_ws, versions

__all__ = ["quick_heartbeat", "team_ws"]  # the fixtures, shared with test_queue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, prctl")

Workers = Callable[..., subprocess.Popen]


@pytest.fixture
def workers(team_ws: Path, tmp_path: Path) -> Iterator[Workers]:
    """Start `medviewer worker --workspace team_ws ARGS...`; every one is stopped afterwards."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        n = len(started)
        log = tmp_path / f"worker{n}.log"
        started.append(start_worker(team_ws, log, "--name", f"w{n}", *args, beating=n + 1))
        return started[-1]

    yield start
    stop_workers(team_ws, started)


def job_processes(folder: Path) -> list[int]:
    """Live processes of the job in `folder` (the tether, torchrun, every rank, of node 0 and
    of a joining node): those whose command line names one of its job files."""
    job_files = {str(folder / "job.json"), *(str(folder / f"node-{r}.json") for r in (1, 2))}
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            args = (stat.parent / "cmdline").read_bytes().decode("utf-8", "replace").split("\0")
            zombie = stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            continue
        if job_files.intersection(args) and not zombie:
            found.append(int(stat.parent.name))
    return found


def until(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until `check()` held (AssertionError after `seconds`)."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < seconds, f"still not so after {seconds} s"
        time.sleep(0.1)
    return time.monotonic() - t0


def test_two_workers_run_one_job_on_two_nodes(team_ws: Path, workers: Workers) -> None:
    nodes = ["--nproc", "2", "--nnodes", "2", "--advertise-host", "127.0.0.1"]
    workers(*nodes)
    workers(*nodes)
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        before = versions(ws)
        jobs = JobManager(ws, on_event=lambda _, e: heard.append(e))
        job = jobs.start("lesion", **OPTIONS)
        assert job.state == "queued"
        ended = jobs.wait(job.id, timeout=400)
        folder = jobs.folder(job.id)
        assert ended.state == "finished", (ended.message, (folder / "stderr.log").read_text())
        assert versions(ws) == [*before, ended.progress["version"]]  # one version, registered

        def joins() -> list[tuple[str, str, int]]:
            return [tuple(r) for r in ws.db.execute(
                "SELECT status::text, args->>'endpoint', (args->>'node_rank')::int"
                " FROM procrastinate_jobs WHERE task_name = ? AND (args->>'job_id')::bigint = ?",
                (job_queue.JOIN_TASK, job.id),
            )]  # fmt: skip

        until(lambda: joins()[0][0] != "doing", 30)  # node 1's torchrun ends after node 0
        (join,) = joins()
    assert join[0] == "succeeded" and join[2] == 1
    assert join[1].startswith("127.0.0.1:")  # the advertised host
    start = next(e for e in heard if e.kind == "start")
    assert start.world_size == 4  # 2 nodes x 2 ranks met in one rendezvous
    kinds = [e.kind for e in heard]
    assert kinds.count("start") == 1 and kinds[-2:] == ["done", "ended"]  # node 0 alone tells
    assert (folder / "node-1.log").is_file()  # the joiner's ranks ran (here: the same folder)
    assert (folder / "node-1.json").is_file()  # on its own job file: node 0's is not raced


def test_a_job_whose_second_node_never_comes_fails_with_the_reason(
    team_ws: Path, workers: Workers
) -> None:
    workers("--nnodes", "2", "--advertise-host", "127.0.0.1", "--join-timeout", "3")
    with Workspace.open(team_ws) as ws:
        before = versions(ws)
        jobs = JobManager(ws)
        job = jobs.start("lesion", **OPTIONS)
        t0 = time.monotonic()
        ended = jobs.wait(job.id, timeout=60)  # not a hang
        assert time.monotonic() - t0 < 30
        assert ended.state == "failed"
        assert ended.message.startswith("no other worker joined within 3 s")
        assert "start `medviewer worker` on 1 more machine(s)" in ended.message
        assert versions(ws) == before
        (status,) = ws.db.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE task_name = ?"
            " AND (args->>'job_id')::bigint = ?",
            (job_queue.JOIN_TASK, job.id),
        ).fetchone()
        assert status == "cancelled"  # no worker coming later joins a job that is over
        assert job_processes(jobs.folder(job.id)) == []  # node 0 never started its ranks


def running_job(ws: Workspace, heard: list[Event]) -> tuple[JobManager, int, Path]:
    """A long job (2 ranks) on the worker, once its first batch is heard."""
    jobs, job = long_job_training(ws, heard, wait=180)
    return jobs, job.id, jobs.folder(job.id)


def test_a_worker_stopped_by_sigterm_cancels_its_job_first(team_ws: Path, workers: Workers) -> None:
    worker = workers("--nproc", "2")
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        jobs, job_id, folder = running_job(ws, heard)
        group = ws.jobs.get(job_id).pid
        assert len(job_processes(folder)) >= 3  # torchrun, 2 ranks (and the tether)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        assert job_processes(folder) == [] and not group_alive(group)  # gone before it exited
        ended = jobs.wait(job_id, timeout=30)
        assert (ended.state, ended.message) == ("cancelled", STOPPED)
        assert heard[-1] == Ended(state="cancelled", message=STOPPED)


def test_a_worker_killed_by_sigkill_takes_its_training_with_it(
    team_ws: Path, workers: Workers
) -> None:
    worker = workers("--nproc", "2")
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        jobs, job_id, folder = running_job(ws, heard)
        group = ws.jobs.get(job_id).pid
        assert len(job_processes(folder)) >= 3
        worker.kill()
        worker.wait()
        took = until(lambda: job_processes(folder) == [] and not group_alive(group), 10)
        print(f"training gone {took:.2f} s after the worker's SIGKILL")
        ended = jobs.wait(job_id, timeout=60)
        assert (ended.state, ended.message) == ("failed", WORKER_DIED)
        assert heard[-1] == Ended(state="failed", message=WORKER_DIED)


def test_the_app_cancels_a_job_running_on_two_nodes(team_ws: Path, workers: Workers) -> None:
    nodes = ["--nnodes", "2", "--advertise-host", "127.0.0.1"]
    workers(*nodes)
    workers(*nodes)
    heard: list[Event] = []
    with Workspace.open(team_ws) as ws:
        before = versions(ws)
        jobs, job_id, folder = running_job(ws, heard)
        jobs.cancel(job_id)
        ended = jobs.wait(job_id, timeout=60)
        assert (ended.state, ended.message) == ("cancelled", "cancelled")
        until(lambda: job_processes(folder) == [], 30)  # node 1's ranks too
        (join,) = ws.db.execute(
            "SELECT id FROM procrastinate_jobs WHERE task_name = ?"
            " AND (args->>'job_id')::bigint = ?",
            (job_queue.JOIN_TASK, job_id),
        ).fetchone()
        until(lambda: job_queue.task_status(ws, join) != "doing", 30)  # the joiner is free again
        assert versions(ws) == before


def test_the_tether_ends_as_its_command_did() -> None:
    assert subprocess.run(tethered(["sh", "-c", "exit 3"], 1.0)).returncode == 3
    killed = subprocess.run(tethered(["sh", "-c", "kill -9 $$"], 1.0))
    assert killed.returncode == -signal.SIGKILL  # read as a SIGKILL (out of memory), as before


def test_the_nodes_wait_for_each_other_only_so_long() -> None:
    command = launch_module("m", Ranks(2, 2, 0, "127.0.0.1:29400", "job-3", join_timeout=7))
    assert "--rdzv-conf=is_host=true,join_timeout=7" in command
