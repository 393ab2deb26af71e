"""The NCCL path of distributed training: two ranks, one GPU each, train one version in step.
Marked `gpu` (skipped without CUDA: tests/conftest.py) and skipped with fewer than 2 GPUs, as
NCCL gives each rank a GPU of its own (`trainer.device_for` refuses more ranks than GPUs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medviewer.processes import Ranks, launch_module
from medviewer.training.jobs import JobManager
from medviewer.workspace import Workspace
from tests.training.test_ddp import make_workspace

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two NCCL ranks need two GPUs"),
]


def test_two_nccl_ranks_train_in_step_and_register_one_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws_dir = make_workspace(tmp_path)
    probes = tmp_path / "probes"
    probes.mkdir()
    monkeypatch.setenv("MEDVIEWER_PROBE_DIR", str(probes))
    monkeypatch.setenv("MEDVIEWER_DDP_TIMEOUT_S", "120")
    monkeypatch.chdir(ROOT)  # the probe module runs from the repository
    command = launch_module("tests.training.ddp_probe", Ranks(nproc=2))
    options = {"epochs": 2, "batch_size": 2, "device": "cuda", "augment": False, "patience": 0}
    with Workspace.open(ws_dir) as ws:
        jobs = JobManager(ws, command=command)
        job = jobs.start("lesion", **options)
        ended = jobs.wait(job.id, timeout=300)
        assert ended.state == "finished", (ended.message, jobs.output(job.id))
        assert [m.version for m in ws.models.list("lesion")] == ["v1", "v2"]
        (start,) = [e for e in jobs.events(job.id) if e.kind == "start"]
    assert start.world_size == 2 and start.device == "cuda:0"
    ranks = [json.loads((probes / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights"] == ranks[1]["weights"]  # NCCL's all-reduce kept them in step
