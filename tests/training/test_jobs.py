"""The job manager with fake trainers: small scripts that keep the JSON-lines contract (or break
it) in a fraction of a second, so these tests do not depend on the real trainer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medviewer.processes import is_our_job, pid_alive
from medviewer.training.jobs import APP_DIED, OUT_OF_MEMORY, JobError, JobManager, as_it_stands
from medviewer.training.protocol import Event, JobRequest
from medviewer.workspace import Workspace

PRELUDE = """\
import json, os, signal, subprocess, sys, time
job = json.load(open(sys.argv[1]))
def emit(**event):
    print(json.dumps(event), flush=True)
"""

GOOD = """\
print("a warning that is not JSON", flush=True)
emit(event="start", epochs=1, train_images=4, val_images=1, negatives=1, device="cpu")
for step in range(1, 4):
    time.sleep(0.02)
    emit(event="batch", epoch=1, step=step, steps=3, loss=1.0 / step)
emit(event="epoch", epoch=1, epochs=1, train_loss=0.4, val_loss=0.5, val_metric=0.7,
     metrics={"score": 0.7}, seconds=0.1)
emit(event="done", version="v2", metrics={"score": 0.7}, active_metrics=None, activated=True)
"""

# Ignores SIGTERM, and so does the child it starts: only SIGKILL to the group ends them.
STUBBORN = """\
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
print(f"child {child.pid}", flush=True)  # not an event: the manager keeps it as output
time.sleep(60)
"""


def fake(tmp_path: Path, body: str, name: str = "trainer") -> list[str]:
    script = tmp_path / f"{name}.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return [sys.executable, str(script)]


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.open(tmp_path / "ws") as ws:
        yield ws


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.seen = threading.Condition()

    def __call__(self, job_id: int, event: Event) -> None:
        with self.seen:
            self.events.append((job_id, event.to_dict()))
            self.seen.notify_all()

    def kinds(self, job_id: int) -> list[str]:
        return [e["event"] for j, e in self.events if j == job_id]

    def wait_for(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        with self.seen:
            ok = self.seen.wait_for(lambda: kind in [e["event"] for _, e in self.events], timeout)
        assert ok, f"no {kind} event within {timeout} s: {self.events}"
        return next(e for _, e in self.events if e["event"] == kind)


def test_progress_reaches_listeners_in_order_and_the_job_finishes(ws: Workspace, tmp_path: Path):
    heard = Recorder()
    jobs = JobManager(ws, command=fake(tmp_path, GOOD), on_event=heard)
    job = jobs.start("lesion", epochs=1, batch_size=2, lr=0.001)
    assert job.state == "running" and job.pid and job.kind == "training"
    request = JobRequest.read(jobs.folder(job.id) / "job.json")
    assert request == JobRequest.create(
        ws.root.resolve(), "lesion", jobs.folder(job.id), epochs=1, batch_size=2, lr=0.001
    )
    ended = jobs.wait(job.id, timeout=10)
    assert heard.kinds(job.id) == ["start", "batch", "batch", "batch", "epoch", "done", "ended"]
    assert [e["loss"] for _, e in heard.events if e["event"] == "batch"] == [1.0, 0.5, 1 / 3]
    assert heard.events[-1][1] == {
        "event": "ended",
        "state": "finished",
        "message": "version v2 registered and activated",
    }
    assert ended.state == "finished" and ended.message == "version v2 registered and activated"
    assert ended.progress["version"] == "v2" and ended.progress["event"] == "done"
    assert jobs.output(job.id) == ["a warning that is not JSON"]
    assert [e.kind for e in jobs.events(job.id)][:2] == ["start", "batch"]
    assert [j.id for j in jobs.jobs("lesion")] == [job.id] and jobs.jobs("other") == []
    with Workspace.open(ws.root) as again:  # the record outlives the app
        assert again.jobs.get(job.id).state == "finished"
        assert again.jobs.get(job.id).progress["version"] == "v2"


def test_batch_progress_is_throttled_epochs_are_not(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    body = """\
    emit(event="start", epochs=2, train_images=4, val_images=1, negatives=0, device="cpu")
    for epoch in (1, 2):
        for step in range(1, 201):
            emit(event="batch", epoch=epoch, step=step, steps=200, loss=0.5)
        emit(event="epoch", epoch=epoch, epochs=2, train_loss=0.5, val_loss=0.5, val_metric=0.5,
             metrics={}, seconds=0.0)
    emit(event="done", version="v2", metrics={}, active_metrics=None, activated=False)
    """
    writes: list[dict[str, Any]] = []
    update = ws.jobs.update

    def counting(job_id: int, **fields: Any):
        writes.append(fields)
        return update(job_id, **fields)

    monkeypatch.setattr(ws.jobs, "update", counting)
    heard = Recorder()
    jobs = JobManager(ws, command=fake(tmp_path, body), on_event=heard)
    job = jobs.start("lesion")
    assert jobs.wait(job.id, timeout=10).state == "finished"
    assert heard.kinds(job.id).count("batch") == 400  # listeners hear every line
    progress = [w["progress"]["event"] for w in writes if w.get("progress")]
    assert progress.count("epoch") == 2 and progress.count("start") == 1
    assert progress.count("batch") < 20  # not one write per line: at most one per 0.5 s
    epoch = next(w for w in writes if w.get("progress", {}).get("event") == "epoch")
    assert epoch["message"] == "epoch 1 of 2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'emit(event="error", message="no confirmed images to train lesion on")\nsys.exit(1)',
            "no confirmed images to train lesion on",
        ),
        (
            'print("Traceback (most recent call last):", file=sys.stderr)\n'
            'print("ZeroDivisionError: division by zero", file=sys.stderr)\nsys.exit(3)',
            "training stopped unexpectedly (exit code 3): Traceback (most recent call last):\n"
            "ZeroDivisionError: division by zero",
        ),
        (
            'print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB",'
            " file=sys.stderr)\nsys.exit(1)",
            OUT_OF_MEMORY,
        ),
        # What the kernel's OOM killer does: SIGKILL, which nobody here sent.
        ("os.kill(os.getpid(), signal.SIGKILL)", OUT_OF_MEMORY),
        ("pass", "training stopped unexpectedly (it ended without a result): no error output"),
    ],
    ids=["error-event", "crash", "cuda-oom", "oom-killer", "no-result"],
)
def test_failures_say_why(ws: Workspace, tmp_path: Path, body: str, message: str):
    heard = Recorder()
    jobs = JobManager(ws, command=fake(tmp_path, body), on_event=heard)
    job = jobs.wait(jobs.start("lesion").id, timeout=10)
    assert (job.state, job.message) == ("failed", message)
    assert heard.events[-1][1] == {"event": "ended", "state": "failed", "message": message}


def test_cancel_kills_the_whole_tree_even_when_it_ignores_sigterm(ws: Workspace, tmp_path: Path):
    heard = Recorder()
    jobs = JobManager(ws, command=fake(tmp_path, STUBBORN), on_event=heard, grace=0.5)
    job = jobs.start("lesion")
    deadline = time.monotonic() + 10
    while not jobs.output(job.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(jobs.output(job.id)[0].split()[1])
    assert pid_alive(child) and pid_alive(job.pid)
    t0 = time.monotonic()
    jobs.cancel(job.id)
    jobs.cancel(job.id)  # a second click changes nothing
    ended = jobs.wait(job.id, timeout=10)
    assert time.monotonic() - t0 >= 0.5  # SIGTERM was ignored: SIGKILL after the grace period
    assert (ended.state, ended.message) == ("cancelled", "cancelled")
    assert not pid_alive(job.pid) and not pid_alive(child)
    with pytest.raises(JobError, match="is cancelled"):
        jobs.cancel(job.id)


def test_one_job_per_model(ws: Workspace, tmp_path: Path):
    jobs = JobManager(ws, command=fake(tmp_path, "time.sleep(60)"), grace=1)
    first = jobs.start("lesion")
    with pytest.raises(JobError, match=f"lesion is already training \\(job {first.id}\\)"):
        jobs.start("lesion")
    other = jobs.start("nodule")  # another model may train meanwhile
    with pytest.raises(JobError, match="unknown training option.*epochz"):
        jobs.start("chest", epochz=3)
    jobs.cancel(first.id)
    assert jobs.wait(first.id, timeout=10).state == "cancelled"
    third = jobs.start("lesion")  # free again once it ended
    jobs.close(cancel=True, timeout=10)  # an app closing with the jobs stopped
    assert {ws.jobs.get(j.id).state for j in (other, third)} == {"cancelled"}
    with pytest.raises(JobError, match="closed"):
        jobs.start("lesion")


def test_recover_settles_jobs_a_crashed_app_left_running(ws: Workspace, tmp_path: Path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = ws.jobs.create("training", "lesion")
    ws.jobs.update(dead.id, state="running", pid=gone.pid)
    stranger = ws.jobs.create("training", "nodule")  # its pid now belongs to someone else
    ws.jobs.update(stranger.id, state="running", pid=os.getpid())
    finished = ws.jobs.create("training", "chest")  # the trainer finished as the app died
    ws.jobs.update(finished.id, state="running", pid=gone.pid)
    folder = ws.root.resolve() / "jobs" / str(finished.id)
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"event": "done", "version": "v3"}))
    assert not is_our_job(os.getpid(), folder / "job.json")
    jobs = JobManager(ws, command=fake(tmp_path, "pass"))  # a restarted app: recover() runs
    assert jobs.folder(finished.id) == folder
    assert jobs.recover() == []  # nothing left to settle
    ws.close()
    with Workspace.open(ws.root) as again:
        assert again.jobs.get(dead.id).state == "failed"
        assert again.jobs.get(dead.id).message == APP_DIED
        assert again.jobs.get(stranger.id).message == APP_DIED
        done = again.jobs.get(finished.id)
        assert (done.state, done.message) == ("finished", "version v3 registered")
        assert done.progress["version"] == "v3"


def test_a_restarted_app_follows_a_job_that_kept_running(ws: Workspace, tmp_path: Path):
    body = """\
    emit(event="start", epochs=1, train_images=4, val_images=1, negatives=0, device="cpu")
    time.sleep(1.0)
    emit(event="done", version="v2", metrics={}, active_metrics=None, activated=False)
    """
    first = JobManager(ws, command=fake(tmp_path, body))
    job = first.start("lesion")
    first.close()  # the app quits and leaves the training to run
    heard = Recorder()
    second = JobManager(ws, on_event=heard)  # the next app on the workspace
    assert second.get(job.id).state == "running"
    ended = second.wait(job.id, timeout=10)
    assert (ended.state, ended.message) == ("finished", "version v2 registered")
    assert heard.kinds(job.id) == ["start", "done", "ended"]


def test_resume_runs_a_failed_job_again_on_its_folder(ws: Workspace, tmp_path: Path):
    body = """\
    marker = os.path.join(job["run_dir"], "tried")
    if not os.path.exists(marker):
        open(marker, "w").close()
        emit(event="error", message="disk full")
        sys.exit(1)
    emit(event="done", version="v2", metrics={}, active_metrics=None, activated=False)
    """
    heard = Recorder()
    jobs = JobManager(ws, command=fake(tmp_path, body), on_event=heard)
    job = jobs.start("lesion")
    assert jobs.wait(job.id, timeout=10).message == "disk full"
    assert jobs.resume(job.id).state == "running"
    assert jobs.wait(job.id, timeout=10).state == "finished"
    assert heard.kinds(job.id) == ["error", "ended", "done", "ended"]
    with pytest.raises(JobError, match="only a failed or cancelled job"):
        jobs.resume(job.id)


def test_status_shows_a_job_whose_process_died_as_interrupted(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17, item 15: after `kill -9` of `medviewer train` its job stayed "running" with a
    dead pid until resumed. How it stands is read, not saved, so `status` can say it read-only."""
    from medviewer.cli import main

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = ws.jobs.create("training", "lesion")
    ws.jobs.update(dead.id, state="running", pid=gone.pid)
    alive = ws.jobs.create("training", "chest")
    folder = ws.root.resolve() / "jobs" / str(alive.id)
    folder.mkdir(parents=True)
    runner = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(folder / "job.json")]
    )
    try:
        ws.jobs.update(alive.id, state="running", pid=runner.pid)
        assert [as_it_stands(ws, j).state for j in ws.jobs.list()] == ["failed", "running"]
        assert main(["status", "--workspace", str(ws.root)]) == 0
        out = capsys.readouterr().out
        assert f"job {dead.id} training lesion: failed ({APP_DIED}); resume with" in out
        assert f"job {alive.id} training chest: running (pid {runner.pid})" in out
        assert main(["status", "--workspace", str(ws.root), "--json"]) == 0
        jobs = json.loads(capsys.readouterr().out)["jobs"]
        assert [(j["id"], j["state"]) for j in jobs] == [(dead.id, "failed"), (alive.id, "running")]
    finally:
        runner.kill()
        runner.wait()
    assert ws.jobs.get(dead.id).state == "running"  # status only reads; the app's recover saves


def test_train_says_how_a_killed_trainer_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17, item 15: a trainer killed under `medviewer train` ended it with exit code 1,
    no message and no reason recorded."""
    from medviewer.cli import main
    from medviewer.cli import training as train_command

    body = """\
    emit(event="start", epochs=1, train_images=4, val_images=1, negatives=1, device="cpu")
    os.kill(os.getpid(), signal.SIGKILL)
    """
    command = fake(tmp_path, body)
    monkeypatch.setattr(train_command, "python_module", lambda module: command)
    ws_dir = tmp_path / "ws"
    Workspace.open(ws_dir).close()
    assert main(["train", "--workspace", str(ws_dir), "--model", "lesion"]) == 1
    said = "training stopped unexpectedly (killed by signal 9, SIGKILL)"
    err = capsys.readouterr().err
    assert f"error: {said}; continue with `medviewer train --resume {ws_dir / 'jobs' / '1'}`" in err
    with Workspace.open(ws_dir, readonly=True) as ws:
        (job,) = ws.jobs.list()
    assert (job.state, job.message) == ("failed", said)
