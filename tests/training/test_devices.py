"""Where training's models run: a model always goes to the device (and fp32 weights) of its
input, whatever the caller left it on, and DDP takes one GPU per rank or the CPU when asked.

These run on the CPU. The bug they stand for (issue 11): on a GPU, the active version was loaded
on the CPU and compared with the new one on cuda, `Input type (torch.cuda.HalfTensor) and weight
type (torch.FloatTensor)`. A model in float64 is the same mismatch on any machine: the inputs are
fp32, its weights are not, and nothing moved it. tests/gpu/ runs the real thing on cuda."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import medviewer.training.__main__ as job_module
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model
from medviewer.training.__main__ import _distributed, run_job
from medviewer.training.data import Prepared, TrainingSet
from medviewer.training.errors import TrainingError
from medviewer.training.metrics import evaluate, training_autocast
from medviewer.training.protocol import JobRequest
from medviewer.training.trainer import Dist, device_for
from medviewer.workspace import Workspace
from tests.training.test_data import (
    SEG,
    confirm,
    make_studies,
    one_thread,  # noqa: F401 - autouse fixture
)

SMALL = ModelSpec.from_dict({**SEG, "input": {"size": [32, 32]}})


def prepared(n: int = 6, size: int = 32) -> Prepared:
    rng = np.random.default_rng(0)
    x = rng.random((n, size, size, 1)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    masks[::2, 8:20, 8:20] = 1
    none = np.zeros((n, 0), np.float32)
    return Prepared(
        SMALL, x, masks, np.ones(n, bool), none, none, np.zeros(n, bool), list(range(n))
    )


def test_evaluate_moves_the_model_to_its_inputs_device_and_fp32() -> None:
    torch.manual_seed(0)
    model = build_model(SMALL)
    data = TrainingSet(prepared())
    expected = evaluate(copy.deepcopy(model), data, SMALL, torch.device("cpu"), batch_size=4)
    other = copy.deepcopy(model).double()  # weights not of the input's type, as on the GPU
    got = evaluate(other, data, SMALL, "cpu", batch_size=4)
    assert got == expected  # float32 -> float64 -> float32 is exact: the same network
    params = list(other.parameters())
    assert {p.device.type for p in params} == {"cpu"} and {p.dtype for p in params} == {
        torch.float32
    }


def test_training_runs_in_fp32_on_the_cpu_whatever_the_cpu() -> None:
    # bf16 autocast on AMX CPUs would train a different model there than elsewhere.
    assert training_autocast(torch.device("cpu")) is None


def test_the_active_version_is_judged_wherever_it_was_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compare-with-active path: the active version comes back from `load_version` in a form
    the inputs do not match (here float64); the job still registers v2 with both metrics."""
    truth = make_studies(tmp_path / "study", patients=4, slices=2)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "study"])
        torch.manual_seed(0)
        add_model(ws, ModelSpec.from_dict(SEG), None)
        confirm(ws, truth)
    real = job_module.load_version
    calls: list[str] = []

    def load_elsewhere(*args: Any, **kw: Any) -> Any:
        model, spec, version = real(*args, **kw)
        calls.append(version)
        # The first load is trained; the second is the active version, compared with it.
        return (model.double() if len(calls) == 2 else model), spec, version

    monkeypatch.setattr(job_module, "load_version", load_elsewhere)
    data = {
        "workspace": str(tmp_path / "ws"),
        "model": "lesion",
        "epochs": 1,
        "batch_size": 4,
        "device": "cpu",
        "val_fraction": 0.25,
        "augment": False,
    }
    done = run_job(JobRequest.from_dict(data), lambda event: None)
    assert calls == ["v1", "v1"]
    assert done is not None and (done.version, done.active_version) == ("v2", "v1")
    assert done.active_metrics is not None and done.active_metrics["score"] is not None
    with Workspace.open(tmp_path / "ws") as ws:
        assert [m.version for m in ws.models.list("lesion")] == ["v1", "v2"]


# -- DDP: one GPU per rank, or the CPU -------------------------------------------------------


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A machine that reports one CUDA GPU; joining a group is recorded, not done."""
    joined: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def no_gpu_really(*args: Any) -> None:
        raise AssertionError("set_device called on a CPU job")

    monkeypatch.setattr(torch.cuda, "set_device", no_gpu_really)
    monkeypatch.setattr(torch.distributed, "init_process_group", joined.append)
    return joined


def torchrun_env(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    for key, value in {
        "WORLD_SIZE": world,
        "RANK": rank,
        "LOCAL_RANK": rank,
        "LOCAL_WORLD_SIZE": world,
    }.items():
        monkeypatch.setenv(key, str(value))


def test_ddp_on_the_cpu_when_asked_even_with_a_gpu(
    one_gpu: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    torchrun_env(monkeypatch, rank=1, world=2)
    dist = _distributed("cpu")
    assert (dist.rank, dist.world, dist.local_rank) == (1, 2, 1)
    assert one_gpu == ["gloo"]
    assert device_for("cpu", dist) == torch.device("cpu")


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_ddp_refuses_more_ranks_than_gpus_naming_both(
    one_gpu: list[str], monkeypatch: pytest.MonkeyPatch, device: str
) -> None:
    for rank in (0, 1):  # every rank refuses, not only the one without a GPU
        torchrun_env(monkeypatch, rank=rank, world=2)
        with pytest.raises(TrainingError) as e:
            _distributed(device)
        message = str(e.value)
        assert "2 training processes on this machine but 1 CUDA GPU:" in message
        assert "--nproc_per_node=1" in message and "device cpu" in message
    assert one_gpu == []  # refused before joining the group


def test_ddp_takes_the_gpu_of_its_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_for("cuda", Dist(3, 4, 1), local_world=2) == torch.device("cuda", 1)
    assert device_for("auto", Dist(0, 2, 0), local_world=2) == torch.device("cuda", 0)


def test_ddp_without_a_gpu_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for("auto", Dist(1, 2, 1)) == torch.device("cpu")
