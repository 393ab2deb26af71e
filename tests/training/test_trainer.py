"""Retraining end to end: a version registered with metrics for it and the active one, activation
only when better, resume after a kill, the JSON-lines contract, errors as events, and proof that
a retrained model beats a weak one on images it never saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import medviewer.training.__main__ as job_module
import medviewer.training.trainer as trainer_module
from medviewer.imaging import ImageLoader
from medviewer.inference.engine import Engine
from medviewer.inference.proposal import make_proposal
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model, load_version, version_dir
from medviewer.training.__main__ import main, run_job
from medviewer.training.data import Prepared
from medviewer.training.protocol import JobRequest
from medviewer.training.trainer import TrainConfig, fit
from medviewer.workspace import Workspace
from tests.training.test_data import (
    SEG,
    confirm,
    make_studies,
    one_thread,  # noqa: F401 - autouse fixture
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
    """A workspace of 6 patients x 3 slices (64x64, a third negative) and a random model v1."""
    truth = make_studies(tmp_path / "study", patients=6, slices=3)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "study"])
        torch.manual_seed(0)  # v1's random weights
        add_model(ws, ModelSpec.from_dict(SEG), None)
    yield tmp_path / "ws", truth


def job(ws_dir: Path, run_dir: Path | None = None, **changes: Any) -> dict[str, Any]:
    base = {
        "workspace": str(ws_dir),
        "model": "lesion",
        "epochs": 1,
        "batch_size": 4,
        "lr": 3e-3,
        "device": "cpu",
        "seed": 0,
        "val_fraction": 0.25,
        "augment": False,
        "run_dir": str(run_dir) if run_dir else None,
    }
    return {**base, **changes}


def run(data: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    done = run_job(JobRequest.from_dict(data), lambda e: events.append(e.to_dict()), **kw)
    json.dumps(events)  # every event is plain JSON
    return (done.to_dict() if done else None), events


def test_run_registers_a_version_compared_with_the_active_one(project: tuple, tmp_path: Path):
    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)
    done, events = run(job(ws_dir, tmp_path / "run", epochs=2, augment=True))
    start = events[0]
    assert start["event"] == "start" and start["train_images"] + start["val_images"] == 18
    assert start["negatives"] == 6
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert done["version"] == "v2" and not done["activated"]
    with Workspace.open(ws_dir) as ws:
        v2 = ws.models.get("lesion", "v2")
        assert ws.models.active("lesion").version == "v1"  # not asked to activate
    m = v2.metrics
    assert m["validation"]["score"] == done["metrics"]["score"]
    assert m["compared_with"]["version"] == "v1"
    assert "lesion" in m["compared_with"]["validation"]["dice"]
    manifest = json.loads((version_dir_of(ws_dir, "v2") / "manifest.json").read_text())
    assert manifest == json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["items"]) == 18 and sum(i["negative"] for i in manifest["items"]) == 6
    split = manifest["split"]
    patients = {r.id: r.patient_id for r in Workspace.open(ws_dir, readonly=True).images()}
    assert not {patients[i] for i in split["train"]} & {patients[i] for i in split["val"]}


def test_the_comparison_validates_on_patients_the_active_version_never_learnt_from(
    project: tuple,
) -> None:
    """v3 is trained from, and compared with, v2: v2's training patients stay out of v3's
    validation, so neither version is judged on what it learnt."""
    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)
    run(job(ws_dir, val_fraction=0.5))  # v2
    with Workspace.open(ws_dir) as ws:
        ws.models.activate("lesion", "v2")
    for seed in (0, 1):
        done, _ = run(job(ws_dir, val_fraction=0.5, seed=seed))
        read = lambda v: json.loads((version_dir_of(ws_dir, v) / "manifest.json").read_text())  # noqa: E731
        v2, new = read("v2"), read(done["version"])
        assert new["trained_from"] == "v2" and new["learnt_by_active"] == sorted(
            v2["split"]["train"]
        )
        patients = {r.id: r.patient_id for r in Workspace.open(ws_dir, readonly=True).images()}
        learnt = {patients[i] for i in v2["split"]["train"]}
        assert new["split"]["val"] and not {patients[i] for i in new["split"]["val"]} & learnt
        assert not new["split"]["seen_held_out"]


def test_beside_other_models_a_model_trains_only_on_its_own_images(project: tuple, tmp_path):
    """A chest model must not learn from another task's confirmed images: with two models in
    the workspace, a job takes the images whose revisions name its model."""
    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)  # human truth naming no model
        other = ModelSpec.from_dict({**SEG, "name": "other-task"})
        add_model(ws, other, None)
        ids = sorted(r.id for r in ws.images())
        mine = set(ids[:12])  # 4 patients' slices: their truth is imported for "lesion"
        for image_id in mine:
            mask = ws.revisions.read_mask(ws.revisions.confirmed(image_id).revision)
            ws.revisions.save_mask(image_id, mask, source="import", author="t",
                                   model=("lesion", "v1"))  # fmt: skip
    done, events = run(job(ws_dir, tmp_path / "run"))
    assert events[0]["train_images"] + events[0]["val_images"] == 12
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {i["image"] for i in manifest["items"]} == mine


def version_dir_of(ws_dir: Path, version: str) -> Path:
    with Workspace.open(ws_dir, readonly=True) as ws:
        return version_dir(ws, "lesion", version)


@pytest.mark.parametrize("active_score, activated", [(2.0, False), (-1.0, True)])
def test_auto_activate_only_when_better(
    project: tuple, monkeypatch: pytest.MonkeyPatch, active_score: float, activated: bool
) -> None:
    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)
    real = job_module.evaluate

    def judged(*args: Any, **kw: Any) -> dict[str, Any]:  # only the active version's evaluation
        return {**real(*args, **kw), "score": active_score}

    monkeypatch.setattr(job_module, "evaluate", judged)
    done, _ = run(job(ws_dir, auto_activate=True))
    assert done["activated"] is activated and done["better"] is activated
    with Workspace.open(ws_dir) as ws:
        assert ws.models.active("lesion").version == ("v2" if activated else "v1")
        assert {m.version for m in ws.models.list("lesion")} == {"v1", "v2"}


class Killed(Exception):
    pass


def test_resume_after_a_kill_continues_the_epoch_count(project: tuple, tmp_path: Path) -> None:
    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth, [n for n in truth if not n.startswith("p5")])

    def kill(epoch: int) -> None:
        raise Killed

    data = job(ws_dir, tmp_path / "run", epochs=3, augment=True)
    with pytest.raises(Killed):
        run(data, after_epoch=kill)
    assert (tmp_path / "run" / "checkpoint" / "epoch-0000" / "state.pt").is_file()
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth, [n for n in truth if n.startswith("p5")])  # saved meanwhile
    done, events = run(data)
    assert events[0]["train_images"] + events[0]["val_images"] == 15  # the same revisions
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [2, 3]
    with Workspace.open(ws_dir) as ws:
        history = ws.models.get("lesion", done["version"]).metrics["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    again, events = run(data)  # finished: reported, not trained or registered twice
    assert again == done and len(events) == 1


@pytest.mark.parametrize(
    "task, extra",
    [
        ("classification", {"labels": ["lesion"]}),
        ("segmentation+classification", {"labels": ["lesion", "other"]}),
    ],
)
def test_classification_tasks_train_and_report_auc(task: str, extra: dict) -> None:
    spec = ModelSpec.from_dict({**SEG, "task": task, **extra})
    rng = np.random.default_rng(0)
    n = 8
    truth = rng.random(n) < 0.5
    labels = np.zeros((n, len(spec.labels)), np.float32)
    labels[:, 0] = truth
    known = np.ones_like(labels)
    masks = np.zeros((n, 64, 64), np.uint8)
    masks[truth, 20:30, 20:30] = 1
    images = rng.random((n, 64, 64, 1)).astype(np.float32) + masks[..., None]
    data = Prepared(spec, images, masks, np.ones(n, bool), labels, known, ~truth, list(range(n)))
    cfg = TrainConfig(
        epochs=2, batch_size=4, device="cpu", freeze_encoder_epochs=1, loss="dice+focal", patience=1
    )
    result = fit(build_model(spec), spec, data, data, cfg)
    assert set(result.metrics["auc"]) == set(spec.labels)
    assert result.metrics["gate_accuracy"] is not None and result.epochs_run >= 1


def held_out_dice(ws_dir: Path, truth: dict[str, np.ndarray], version: str, names: list[str]):
    """Dice of a version's proposals (native size, post-processed, gated) against the truth."""
    with Workspace.open(ws_dir, readonly=True) as ws:
        model, spec, _ = load_version(ws, "lesion", version)
        rows = [r for r in ws.images() if Path(r.path).name in names]
        loader = ImageLoader()
        images = [loader.image(ws.frame_ref(r.id)) for r in rows]
    engine = Engine(model, spec, device="cpu", precision="fp32")
    inter = total = 0
    for row, raw in zip(rows, engine.run(images)):
        pred = make_proposal(engine, raw, version).mask > 0
        true = truth[Path(row.path).name] > 0
        inter += (pred & true).sum()
        total += pred.sum() + true.sum()
    return 2 * inter / total


def test_proof_retraining_on_corrections_beats_a_weak_model(project: tuple, tmp_path: Path):
    ws_dir, truth = project
    confirmed = [n for n in truth if n[:2] in ("p0", "p1", "p2", "p3")]
    held_out = [n for n in truth if n not in confirmed]  # never confirmed, never trained on
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth, confirmed)
    done, _ = run(job(ws_dir, epochs=8, batch_size=2, auto_activate=True))
    v1 = held_out_dice(ws_dir, truth, "v1", held_out)
    v2 = held_out_dice(ws_dir, truth, "v2", held_out)
    print(
        f"held-out Dice: v1 (random) {v1:.3f}, v2 (retrained) {v2:.3f}; "
        f"validation {done['active_metrics']['score']:.3f} -> {done['metrics']['score']:.3f}"
    )
    assert v2 >= v1 + 0.2 and done["activated"]
    with Workspace.open(ws_dir) as ws:
        assert ws.models.active("lesion").version == "v2"


def python_m(job_file: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "medviewer.training", str(job_file)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_json_lines_contract(project: tuple, tmp_path: Path) -> None:
    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job(ws_dir, tmp_path / "run", batch_size=8)))
    proc = python_m(job_file)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]  # every line is JSON
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "batch" in kinds and "epoch" in kinds
    assert {"epochs", "train_images", "val_images", "negatives", "device"} <= set(events[0])
    batch = next(e for e in events if e["event"] == "batch")
    assert {"epoch", "step", "steps", "loss"} <= set(batch)
    epoch = next(e for e in events if e["event"] == "epoch")
    assert {"epoch", "epochs", "train_loss", "val_loss", "val_metric", "metrics", "seconds"} <= set(
        epoch
    )
    assert {"version", "metrics", "active_metrics", "activated"} <= set(events[-1])


def error_of(capsys: pytest.CaptureFixture[str], tmp_path: Path, data: Any, alone=True) -> str:
    """The message of the error event that ends a run of `main` (exit code 1)."""
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(data))
    assert main([str(job_file)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    events = [json.loads(line) for line in out.out.splitlines()]
    assert events[-1]["event"] == "error" and all(e["event"] != "done" for e in events)
    assert len(events) == 1 or not alone  # checked before anything started
    return events[-1]["message"]


def test_human_errors(project: tuple, tmp_path: Path, capsys, monkeypatch) -> None:
    ws_dir, truth = project
    assert "no confirmed images" in error_of(capsys, tmp_path, job(ws_dir))
    assert "no medviewer workspace" in error_of(capsys, tmp_path, job(tmp_path / "nowhere"))
    assert "epochs must be a whole number" in error_of(capsys, tmp_path, job(ws_dir, epochs="two"))
    assert "unknown loss" in error_of(capsys, tmp_path, job(ws_dir, loss="l2"))
    assert "no model other" in error_of(capsys, tmp_path, job(ws_dir, model="other"))
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)
        ws.db.execute("UPDATE models SET active = 0")
    assert "no active version" in error_of(capsys, tmp_path, job(ws_dir))
    with Workspace.open(ws_dir) as ws:
        ws.models.activate("lesion", "v1")

    def full(*args: Any, **kw: Any) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "x"))

    monkeypatch.setattr(trainer_module, "save_file", full)
    message = error_of(capsys, tmp_path, job(ws_dir, tmp_path / "run"), alone=False)
    assert "No space left on device" in message and "free some disk space" in message


def test_cli_writes_a_job_and_prints_progress(project: tuple, capsys) -> None:
    from medviewer.cli import main as cli

    ws_dir, truth = project
    with Workspace.open(ws_dir) as ws:
        confirm(ws, truth)
    code = cli(
        [
            "train",
            "--workspace",
            str(ws_dir),
            "--model",
            "lesion",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--in-process",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "training lesion from v1: " in out and "epoch 1/1: train loss" in out
    assert "new version v2: score" in out and "not activated" in out
    job_file = ws_dir / "jobs" / "1" / "job.json"
    assert json.loads(job_file.read_text())["run_dir"] == str(job_file.parent / "run")
    with Workspace.open(ws_dir) as ws:
        (record,) = ws.jobs.list()
    assert record.state == "finished" and record.progress["version"] == "v2"
