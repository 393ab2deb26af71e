"""`medviewer train --resume` of a job that ran on a worker (issue 16) takes the app's way
(`JobManager.resume`): queued again for the worker, which carries on from its checkpoint, not run
on the reviewer's machine, which has neither the job's folder nor its checkpoint."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from medviewer.cli import main
from medviewer.inference.engine import Engine
from medviewer.models.versions import load_version
from medviewer.training.jobs import JobManager
from medviewer.training.protocol import Epoch, parse_event
from medviewer.workspace import Workspace, job_queue
from tests.training import test_queue_roles as shared
from tests.training.test_queue_roles import OPTIONS, Heard, Team, cancelled_after_an_epoch

# The team's workspace, its logins and the worker subprocess, as test_queue_roles sets them up.
team, worker, quick_heartbeat = shared.team, shared.worker, shared.quick_heartbeat


def _epochs(ws: Workspace, job_id: int) -> int:
    events = (parse_event(line) for _, line in job_queue.events_after(ws, job_id))
    return sum(isinstance(e, Epoch) for e in events)


def test_train_resume_of_a_workers_job_queues_it_for_the_worker(
    team: Team, worker: subprocess.Popen, capsys: pytest.CaptureFixture[str]
) -> None:
    heard = Heard()
    with Workspace.open(team.folder("qrev")) as ws:
        jobs = JobManager(ws, on_event=heard)
        job = cancelled_after_an_epoch(jobs, heard)
        jobs.close()
        first_task = job_queue.queued(ws, job.id).task_id
        before = _epochs(ws, job.id)
    folder = team.folder("qrev") / "jobs" / str(job.id)
    assert not folder.exists()  # it ran on the worker's machine
    ended: dict[str, Any] = {}
    cli = threading.Thread(
        target=lambda: ended.setdefault(
            "code",
            main(["train", "--resume", str(folder), "--workspace", str(team.folder("qrev"))]),
        )
    )
    cli.start()
    with Workspace.open(team.folder("qrev")) as ws:
        deadline = time.monotonic() + 180
        while _epochs(ws, job.id) <= before:  # the worker carries on
            assert cli.is_alive() and time.monotonic() < deadline, capsys.readouterr()
            time.sleep(0.2)
        ran = job_queue.queued(ws, job.id)
        assert ran.task_id != first_task  # a new task for the worker
        JobManager(ws).cancel(job.id)
        cli.join(60)
        assert not cli.is_alive() and ended["code"] == 1
        assert ws.jobs.get(job.id).state == "cancelled"
    out = capsys.readouterr()
    assert f"job {job.id}: queued for a worker" in out.err, out.err
    assert "epoch " in out.out, out.out  # its progress, printed as it came
    assert not folder.exists()  # nothing ran here


def test_the_version_a_worker_trains_loads_from_the_reviewers_own_folder(
    team: Team, worker: subprocess.Popen
) -> None:
    """The worker's training registers through the blob store: the reviewer's machine keeps
    its own copy of the new version's files, never reading the worker's folder."""
    with Workspace.open(team.folder("qrev")) as ws:
        jobs = JobManager(ws)
        job = jobs.start("lesion", **OPTIONS)
        ended = jobs.wait(job.id, timeout=180)
        jobs.close()
        assert ended.state == "finished", ended.message
        new = ended.progress["version"]
        registered = ws.models.get("lesion", new)
        assert "weights.safetensors" in registered.files
        assert Path(registered.path).is_relative_to(team.folder("qwrk"))
        model, spec, _ = load_version(ws, "lesion", new)
        assert (team.folder("qrev") / "models" / "lesion" / new / "weights.safetensors").is_file()
        x = torch.zeros((1, spec.network_channels, *spec.input_size))
        assert torch.isfinite(Engine(model, spec, device="cpu").forward(x)["mask"]).all()
