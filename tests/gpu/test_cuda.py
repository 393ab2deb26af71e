"""The GPU path end to end (issue 11): training, comparison with the active version and
registration, Grad-CAM, label spreading and `medviewer infer`, all on CUDA; DDP refusing more
ranks than GPUs. Marked `gpu`: skipped where torch sees no CUDA GPU (tests/conftest.py);
`make gpu-check` runs them. Each uses the tiny 64x64 workspaces and models of the CPU tests."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medviewer.inference.cam import grad_cam
from medviewer.inference.engine import Engine
from medviewer.models.registry import build_model
from medviewer.models.versions import load_version
from medviewer.training.data import TrainingSet
from medviewer.training.metrics import evaluate, training_autocast
from medviewer.training.spreading import embed, propose_labels
from medviewer.workspace import Workspace
from tests.inference.test_batch_cli import N as INFER_IMAGES
from tests.inference.test_batch_cli import ai_masks, cli, setup  # noqa: F401 - fixture
from tests.inference.test_cam import CLASSIFIER, grey, make_engine
from tests.training.test_ddp import free_port, make_workspace
from tests.training.test_devices import SMALL, prepared
from tests.training.test_spreading import (  # noqa: F401 - fixtures
    HUMAN,
    N,
    propagated,
    study,
    truth,
    ws,
)

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
CUDA = torch.device("cuda")


def test_training_precision_is_bf16_where_the_gpu_has_it() -> None:
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert training_autocast(CUDA) == expected


def test_evaluate_on_cuda_takes_a_model_loaded_on_the_cpu() -> None:
    """The bug of issue 11: the active version, loaded on the CPU, judged on cuda inputs."""
    torch.manual_seed(0)
    model = build_model(SMALL)  # on the CPU, as load_version returns it
    result = evaluate(model, TrainingSet(prepared()), SMALL, CUDA, batch_size=4)
    assert result["images"] == 6 and result["score"] is not None
    assert {p.device.type for p in model.parameters()} == {"cuda"}


def train(ws_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`medviewer train` as a user runs it: the CLI starts `python -m medviewer.training`."""
    command = [sys.executable, "-m", "medviewer.cli", "train", "--workspace", str(ws_dir)]
    command += ["--model", "lesion", "--device", "cuda", "--epochs", "2", "--batch-size", "4"]
    command += ["--patience", "0", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_retrain_on_cuda_compares_with_the_active_version_and_registers(tmp_path: Path) -> None:
    ws_dir = make_workspace(tmp_path)  # 8 approved 64x64 slices, a random-weight v1 active
    first = train(ws_dir, "--activate-if-better")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-4000:]
    assert "on cuda" in first.stdout and "for active v1" in first.stdout, first.stdout
    second = train(ws_dir)  # against whichever version is active now, trained or not
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-4000:]
    with Workspace.open(ws_dir) as opened:
        assert [m.version for m in opened.models.list("lesion")] == ["v1", "v2", "v3"]
        for version in ("v2", "v3"):
            metrics = opened.models.get("lesion", version).metrics
            assert metrics["validation"]["score"] is not None
            compared = metrics["compared_with"]
            assert compared["version"] in ("v1", "v2")
            assert compared["validation"]["score"] is not None


def test_ddp_refuses_more_ranks_than_gpus(tmp_path: Path) -> None:
    gpus = torch.cuda.device_count()
    job = {"workspace": str(tmp_path / "none"), "model": "lesion", "device": "cuda"}
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus + 1}"]
    command += [f"--master_port={free_port()}", "-m", "medviewer.training", str(job_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert proc.returncode != 0
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["error"], proc.stdout + proc.stderr[-2000:]
    s = "" if gpus == 1 else "s"
    expected = f"{gpus + 1} training processes on this machine but {gpus} CUDA GPU{s}"
    assert expected in events[0]["message"]


def test_grad_cam_on_cuda_matches_the_cpu() -> None:
    on_cpu = make_engine(CLASSIFIER)
    on_gpu = Engine(copy.deepcopy(on_cpu.model), on_cpu.spec, device="cuda", precision="fp32")
    image = grey(100, 72)
    cpu_maps, gpu_maps = grad_cam(on_cpu, image), grad_cam(on_gpu, image)
    assert list(gpu_maps) == list(cpu_maps) == ["nodule", "effusion"]
    for name, cam in gpu_maps.items():
        assert cam.shape == (100, 72) and cam.dtype == np.float32
        # TF32 convolutions on the GPU: close, not bit-identical.
        np.testing.assert_allclose(cam, cpu_maps[name], atol=0.02)
    assert {p.device.type for p in on_gpu.model.parameters()} == {"cuda"}
    assert all(p.grad is None for p in on_gpu.model.parameters())


def test_label_spreading_on_cuda(ws: Workspace) -> None:  # noqa: F811 - the fixture
    ids = [row.id for row in ws.images()]
    model, spec, _ = load_version(ws, "finding")
    cpu_vectors, _ = embed(ws, copy.deepcopy(model), spec, ids, device="cpu")
    gpu_vectors, ok = embed(ws, copy.deepcopy(model), spec, ids, device="cuda")
    assert ok == ids and gpu_vectors.shape == cpu_vectors.shape
    np.testing.assert_allclose(gpu_vectors, cpu_vectors, rtol=0.02, atol=0.02)
    report = propose_labels(ws, "finding", device="cuda")
    proposals = propagated(ws)
    assert report.labelled == HUMAN and report.proposed == len(proposals)
    assert report.proposed + report.low_confidence == N - HUMAN
    assert report.proposed >= 0.8 * (N - HUMAN)
    agree = sum(rev.labels["blob"] == truth(ws, i) for i, rev in proposals.items())
    assert agree / len(proposals) >= 0.9


def test_infer_cli_on_cuda(setup: tuple, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    ws_dir, spec = setup
    assert cli(capsys, "models", "--workspace", ws_dir, "add", spec)[0] == 0
    code, out, err = cli(capsys, "infer", "--workspace", ws_dir, "--device", "cuda")
    assert code == 0, err
    assert (
        f"tiny v1: {INFER_IMAGES} proposed, 0 skipped (already done), 0 not applicable, 0 failed"
        in out
    )
    assert set(ai_masks(ws_dir).values()) == {1}
