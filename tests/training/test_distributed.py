"""Training as torchrun ranks built by `processes.launch_module`: two CPU (gloo) ranks on one
node train in step and report like one process; two nodes meet over a c10d rendezvous on
127.0.0.1; a rank that dies ends the job as failed with a clear message, not a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from medviewer.processes import LaunchError, Ranks, launch_module
from medviewer.training.__main__ import main
from medviewer.training.jobs import JobManager, rank_failure
from medviewer.training.protocol import Batch, Event, JobRequest
from medviewer.workspace import Workspace
from tests.training.test_ddp import free_port, make_workspace

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"epochs": 2, "batch_size": 2, "device": "cpu", "augment": False, "patience": 0}

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")


@pytest.fixture(autouse=True)
def one_thread_per_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # ranks share the 2 cores
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("MEDVIEWER_DDP_TIMEOUT_S", "60")  # a hung peer, not a dead one


def shape(events: list[Event]) -> tuple[list[str], dict[str, set[str]]]:
    """The kinds in order (runs of batches as one) and each kind's fields."""
    kinds: list[str] = []
    for e in events:
        if e.kind != "ended" and (not kinds or kinds[-1] != e.kind):
            kinds.append(e.kind)
    return kinds, {e.kind: set(e.to_dict()) for e in events if e.kind != "ended"}


def test_two_cpu_ranks_keep_identical_weights_and_report_like_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws_dir = make_workspace(tmp_path)
    alone: list[Event] = []
    job_file = tmp_path / "alone.json"
    JobRequest.create(ws_dir, "lesion", tmp_path / "alone", **OPTIONS).write(job_file)
    assert main([str(job_file)], emit=alone.append) == 0

    probes = tmp_path / "probes"
    probes.mkdir()
    monkeypatch.setenv("MEDVIEWER_PROBE_DIR", str(probes))
    monkeypatch.chdir(ROOT)  # the probe module runs from the repository
    heard: list[Event] = []
    command = launch_module("tests.training.ddp_probe", Ranks(nproc=2))
    with Workspace.open(ws_dir) as ws:
        jobs = JobManager(ws, command=command, on_event=lambda _, e: heard.append(e))
        job = jobs.start("lesion", **OPTIONS)
        ended = jobs.wait(job.id, timeout=240)
        assert ended.state == "finished", (ended.message, jobs.output(job.id))
        assert [m.version for m in ws.models.list("lesion")] == ["v1", "v2", "v3"]
        written = jobs.events(job.id)  # what the job's stdout holds: every rank's prints
    assert shape(heard) == shape(alone)  # the same stream, kind by kind and field by field
    assert [e.kind for e in written].count("start") == 1  # only the leader printed
    assert [e.kind for e in written].count("done") == 1
    start = next(e for e in heard if e.kind == "start")
    assert start.world_size == 2 and start.train_images == alone[0].train_images
    ranks = {p.name: json.loads(p.read_text()) for p in probes.iterdir()}
    assert sorted(ranks) == ["rank0.json", "rank1.json"]
    assert [r["leads"] for _, r in sorted(ranks.items())] == [True, False]
    assert ranks["rank0.json"]["weights"] == ranks["rank1.json"]["weights"]  # DDP in step
    assert ranks["rank0.json"]["best"] == ranks["rank1.json"]["best"]


def train_cli(ws_dir: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "medviewer.cli", "train", "--workspace", str(ws_dir)]
    command += ["--epochs", "1", "--batch-size", "2", "--device", "cpu", "--no-augment"]
    command += ["--patience", "0", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def the_job_folder(ws_dir: Path) -> Path:
    """The job node 0 wrote (a fresh workspace holds one)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list((ws_dir / "jobs").glob("*/job.json"))
        if found:
            return found[0].parent
        time.sleep(0.1)
    raise AssertionError("node 0 wrote no job file")


def test_two_nodes_meet_over_c10d_on_loopback_and_register_one_version(tmp_path: Path) -> None:
    ws_dir = make_workspace(tmp_path)
    nodes = ["--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    node0 = train_cli(ws_dir, "--model", "lesion", "--node-rank", "0", *nodes)
    folder = the_job_folder(ws_dir)
    node1 = train_cli(ws_dir, "--join", str(folder), "--node-rank", "1", *nodes)
    out0, err0 = node0.communicate(timeout=240)
    out1, err1 = node1.communicate(timeout=60)
    assert node0.returncode == 0, out0 + err0[-3000:]
    assert node1.returncode == 0, out1 + err1[-3000:]
    assert "new version v2" in out0 and "new version" not in out1  # node 0 tells the story
    with Workspace.open(ws_dir) as ws:
        assert [m.version for m in ws.models.list("lesion")] == ["v1", "v2"]
        (job,) = ws.jobs.list()  # the joining node recorded no job of its own
        assert job.state == "finished" and job.progress["version"] == "v2"


def test_a_rank_that_dies_fails_the_job_on_every_node(tmp_path: Path) -> None:
    ws_dir = make_workspace(tmp_path)
    endpoint = f"127.0.0.1:{free_port()}"
    first_batch = threading.Event()

    def heard(job_id: int, event: Event) -> None:
        if isinstance(event, Batch):
            first_batch.set()

    with Workspace.open(ws_dir) as ws:
        jobs = JobManager(ws, on_event=heard)
        ranks = Ranks(nproc=1, nnodes=2, node_rank=0, rdzv_endpoint=endpoint)
        job = jobs.start("lesion", ranks=ranks, **{**OPTIONS, "epochs": 300})
        folder = jobs.folder(job.id)
        node1 = train_cli(ws_dir, "--join", str(folder), "--node-rank", "1",
                          "--nnodes", "2", "--rdzv-endpoint", endpoint)  # fmt: skip
        assert first_batch.wait(120), jobs.events(job.id)
        (victim,) = node_ranks(folder, "1")
        os.kill(victim, signal.SIGKILL)
        ended = jobs.wait(job.id, timeout=120)  # ends, never hangs
        assert ended.state == "failed"
        assert "another training process of this job stopped or cannot be reached" in (
            ended.message
        )
        assert "by peer" in ended.message  # gloo: the connection was closed or reset
        assert [m.version for m in ws.models.list("lesion")] == ["v1"]
    _, err1 = node1.communicate(timeout=60)
    assert node1.returncode == 1
    assert "training stopped unexpectedly" in err1


def node_ranks(folder: Path, node_rank: str) -> list[int]:
    """Live trainer ranks (not torchrun's agents) of the job in `folder` on node `node_rank`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if "torch.distributed.run" in args or str(folder / "job.json") not in args:
            continue
        if "medviewer.training" in args and args[args.index("--node-rank") + 1] == node_rank:
            found.append(int(cmdline.parent.name))
    return found


def test_torchrun_commands_for_one_and_several_nodes() -> None:
    assert launch_module("m") == launch_module("m", Ranks(nproc=1, nnodes=1))
    one = launch_module("m", Ranks(nproc=2))
    assert "--standalone" in one and "--nproc-per-node=2" in one
    assert one[one.index("--no-python") + 1 :][-3:] == ["m", "--node-rank", "0"]
    two = launch_module("m", Ranks(2, 2, 1, "10.0.0.5:29400", "job-7"))
    assert "--rdzv-endpoint=10.0.0.5:29400" in two and "--rdzv-id=job-7" in two
    assert "--rdzv-conf=is_host=false" in two and "--nnodes=2" in two


def test_a_frozen_app_starts_torchrun_and_its_ranks_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    command = launch_module("m", Ranks(nproc=2))
    assert command[:3] == [sys.executable, "--run-module", "torch.distributed.run"]
    rank = command[command.index("--no-python") + 1 :]
    assert rank == [sys.executable, "--run-module", "m", "--node-rank", "0"]


@pytest.mark.parametrize(
    ("ranks", "says"),
    [
        (Ranks(nproc=0), "at least one process"),
        (Ranks(nnodes=2, node_rank=2, rdzv_endpoint="h:1"), "node rank 2 is out of range"),
        (Ranks(nnodes=2), "rendezvous endpoint HOST:PORT"),
        (Ranks(nnodes=2, rdzv_endpoint="host:99999"), "not 'host:99999'"),
    ],
)
def test_impossible_launches_are_refused(ranks: Ranks, says: str) -> None:
    with pytest.raises(LaunchError, match=says):
        launch_module("m", ranks)


def test_the_cli_refuses_a_second_node_without_the_job(tmp_path: Path) -> None:
    ws_dir = make_workspace(tmp_path, patients=1, slices=1)
    proc = train_cli(ws_dir, "--model", "lesion", "--node-rank", "1", "--nnodes", "2",
                     "--rdzv-endpoint", "127.0.0.1:1")  # fmt: skip
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--join WORKSPACE/jobs/<id>" in err
    with Workspace.open(ws_dir) as ws:
        assert ws.jobs.list() == []  # refused before a job was written


def test_the_rank_torchrun_names_first_is_the_reason() -> None:
    summary = (
        "training rank 1: no space left\nRoot Cause (first observed failure):\n[0]:\n"
        "  rank      : 1 (local_rank: 1)\n  exitcode  : 1 (pid: 5)\n"
    )
    assert rank_failure(summary) == (
        "training rank 1 failed: no space left and every rank of the job stopped with it"
    )
    killed = summary.replace("exitcode  : 1", "exitcode  : -9")
    assert "killed by signal 9" not in rank_failure(killed)  # what it said comes first
    silent = killed.replace("training rank 1: no space left\n", "")
    assert rank_failure(silent).startswith(
        "training rank 1 stopped unexpectedly (killed by signal 9, SIGKILL)"
    )
    assert "try a smaller batch size" in rank_failure(silent)
    assert rank_failure("Traceback (most recent call last):\n  ...") is None
