"""The trainer under torchrun: two CPU processes (gloo) train one model, only rank 0 prints and
registers the new version.

Both tests ask for the CPU explicitly (device "cpu"): on a machine with one GPU, two ranks must
still run, on the CPU, and never look for a second GPU (issue 11). tests/gpu/ checks that asking
for more ranks than GPUs is refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model
from medviewer.training.protocol import Batch, Event
from medviewer.workspace import Workspace
from tests.imaging.helpers import write_ct_slice
from tests.specs import tiny_segmenter

ROOT = Path(__file__).resolve().parents[2]
TRAINER = ROOT / "medviewer" / "training" / "__main__.py"

SEG = tiny_segmenter(normalization={"window": [40, 400]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(root: Path, patients: int = 4, slices: int = 2) -> Path:
    """64x64 CT slices with a bright disc (every third one without), their true masks imported
    and approved, and a random-weight model v1."""
    rng = np.random.default_rng(0)
    study = root / "study"
    study.mkdir(parents=True)
    masks = {}
    for p in range(patients):
        for k in range(slices):
            hu = rng.normal(40, 30, (64, 64))
            mask = np.zeros((64, 64), np.uint8)
            if (p * slices + k) % 3 != 2:
                yy, xx = np.mgrid[:64, :64]
                cy, cx = rng.uniform(16, 48, 2)
                mask[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(6, 12) ** 2] = 1
                hu[mask == 1] += 250
            name = f"p{p}_s{k}.dcm"
            write_ct_slice(
                study / name,
                (hu + 1024).astype(np.int16),
                series_uid=f"1.2.7.{p}.1",
                study_uid=f"1.2.7.{p}",
                patient_id=f"P{p}",
                position=(0, 0, float(k)),
                instance_number=k + 1,
            )
            masks[name] = mask
    with Workspace.open(root / "ws") as ws:
        ws.import_paths([study])
        for row in ws.images():
            ws.revisions.save_mask(row.id, masks[Path(row.path).name], source="import", author="t")
            ws.revisions.set_status(row.id, "approved", author="dr")
        add_model(ws, ModelSpec.from_dict(SEG), None)
    return root / "ws"


@pytest.mark.skipif(not TRAINER.exists(), reason="medviewer/training/__main__.py not written yet")
def test_torchrun_with_two_cpu_processes_registers_one_version(tmp_path: Path):
    ws_dir = make_workspace(tmp_path)
    job = {
        "workspace": str(ws_dir),
        "model": "lesion",
        "epochs": 1,
        "batch_size": 2,
        "lr": 1e-3,
        "device": "cpu",  # explicitly: gloo on the CPU even where there is a GPU
        "seed": 0,
        "freeze_encoder_epochs": 0,
        "loss": "dice+ce",
        "val_fraction": 0.25,
        "patience": 0,
        "auto_activate": False,
        "augment": False,
        "run_dir": str(tmp_path / "run"),
    }
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "medviewer.training",
        str(job_file),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    events = []
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    kinds = [e["event"] for e in events]
    assert kinds.count("done") == 1 and kinds.count("start") == 1, kinds  # rank 0 only
    assert kinds.count("epoch") == 1 and "error" not in kinds
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2 and start["device"] == "cpu"
    assert start["train_images"] + start["val_images"] == 8
    done = events[-1]
    assert done["event"] == "done" and done["version"] == "v2"
    with Workspace.open(ws_dir) as ws:
        versions = [m.version for m in ws.models.list("lesion")]
        assert versions == ["v1", "v2"]  # one registration, not one per process
        assert ws.models.active("lesion").version == "v1"  # auto_activate was off
        assert ws.models.get("lesion", "v2").metrics["validation"]["score"] is not None


def processes_running(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line mentions `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode("utf-8", "replace")
            state = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in args and state != "Z":
            found.append(int(cmdline.parent.name))
    return found


@pytest.mark.skipif(not TRAINER.exists(), reason="medviewer/training/__main__.py not written yet")
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_cancelling_a_torchrun_job_ends_every_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medviewer.training.jobs import JobManager

    ws_dir = make_workspace(tmp_path)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "medviewer.training",
    ]
    first_batch = threading.Event()

    def heard(job_id: int, event: Event) -> None:
        if isinstance(event, Batch):
            first_batch.set()

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with Workspace.open(ws_dir) as ws:
        jobs = JobManager(ws, command=torchrun, on_event=heard, grace=10)
        # device="cpu" explicitly: gloo on the CPU even where there is a GPU.
        job = jobs.start("lesion", epochs=100, batch_size=2, device="cpu", augment=False)
        job_file = str(jobs.folder(job.id) / "job.json")
        assert first_batch.wait(60), jobs.events(job.id)
        assert len(processes_running(job_file)) >= 3  # torchrun's agent and two ranks
        t0 = time.monotonic()
        jobs.cancel(job.id)
        ended = jobs.wait(job.id, timeout=30)
        print(f"cancel took {time.monotonic() - t0:.2f} s")
        assert (ended.state, ended.message) == ("cancelled", "cancelled")
        assert processes_running(job_file) == []
