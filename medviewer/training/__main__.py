"""`python -m medviewer.training JOB.json`: one retraining job, progress as JSON lines on stdout.

Runs alone or under `torchrun --nproc_per_node=N` (DDP: gloo on the CPU, nccl on GPUs); only
rank 0 prints, writes checkpoints and registers the new version. Errors a user can fix are one
{"event": "error"} line and exit code 1, never a traceback.

Job file keys: workspace, model (trains from its active version), epochs, batch_size, lr,
device (auto|cpu|cuda), seed, freeze_encoder_epochs, loss (dice+ce|dice+focal|ce),
class_weights, val_fraction, patience, auto_activate, run_dir (checkpoints; resumed from when
it holds one), augment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medviewer.imaging import ImageLoadError
from medviewer.inference.errors import InferenceError
from medviewer.models.checkpoints import save_checkpoint
from medviewer.models.errors import ModelError
from medviewer.models.versions import load_version, next_version, version_dir
from medviewer.training.data import (
    TrainingError,
    TrainingSet,
    items_from_manifest,
    prepare,
    split_by_patient,
)
from medviewer.training.metrics import evaluate
from medviewer.training.trainer import Dist, Emit, TrainConfig, device_for, fit
from medviewer.workspace import Workspace, WorkspaceError, training_snapshot
from medviewer.workspace.store import DB_NAME


@dataclasses.dataclass(frozen=True)
class Job:
    workspace: str
    model: str
    run_dir: str | None = None
    val_fraction: float = 0.2
    auto_activate: bool = False
    train: TrainConfig = TrainConfig()

    @classmethod
    def from_dict(cls, data: Any) -> Job:
        """Checked values from a job file's JSON; unknown keys are left to their owners."""
        if not isinstance(data, dict):
            raise TrainingError("a job file holds a JSON object")
        for key in ("workspace", "model"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise TrainingError(f"the job file needs {key!r} (a non-empty string)")
        fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
        given = {}
        for key, f in fields.items():
            if key in data and data[key] is not None:
                kind = type(f.default)
                value = data[key]
                ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
                if not ok or (kind is not bool and isinstance(value, bool)):
                    what = {int: "a whole number", float: "a number", bool: "true or false"}
                    raise TrainingError(f"job {key} must be {what.get(kind, kind)}, got {value!r}")
                given[key] = kind(value)
        val_fraction = data.get("val_fraction", 0.2)
        if not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
            raise TrainingError(f"job val_fraction must be between 0 and 1, got {val_fraction!r}")
        train = TrainConfig(**given)
        train.check()
        return cls(
            data["workspace"],
            data["model"],
            data.get("run_dir"),
            float(val_fraction),
            bool(data.get("auto_activate", False)),
            train,
        )


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite numbers become null (nested too)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def print_event(event: dict[str, Any]) -> None:
    print(json.dumps(_finite(event)), flush=True)


def run_job(
    job: Job,
    emit: Emit = print_event,
    dist: Dist | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Snapshot -> split -> train -> compare with the active version -> register a version.

    Returns the "done" event (also emitted). A run_dir that already holds a registered result
    returns it again instead of training twice."""
    dist = dist or Dist()
    run_dir = Path(job.run_dir) if job.run_dir else None
    if run_dir is not None and (run_dir / "result.json").is_file():
        done = json.loads((run_dir / "result.json").read_text())
        emit(done)
        return done
    if not (Path(job.workspace) / DB_NAME).is_file():
        raise TrainingError(f"{job.workspace}: no medviewer workspace here ({DB_NAME} is missing)")
    with Workspace.open(job.workspace) as ws:
        model, spec, from_version = load_version(ws, job.model)
        split, train, val, manifest = _data(ws, job, spec, run_dir, dist.main, from_version)
        device = device_for(job.train.device, dist)
        emit(
            {
                "event": "start",
                "epochs": job.train.epochs,
                "train_images": len(train),
                "val_images": len(val),
                "negatives": int(train.negative.sum() + val.negative.sum()),
                "device": str(device),
                "model": job.model,
                "trained_from": from_version,
                "world_size": dist.world,
                "skipped": len(manifest["skipped"]),
            }
        )
        kw = {"emit": emit, "run_dir": run_dir, "dist": dist, "after_epoch": after_epoch}
        result = fit(model, spec, train, val, job.train, **kw)
        if not dist.main:
            return {}
        model.load_state_dict(result.state)
        done = _compare_and_register(ws, job, model, spec, result, split, val, manifest, device)
    if run_dir is not None:
        _write_json(run_dir / "result.json", done)
    emit(done)
    return done


def _data(
    ws: Workspace, job: Job, spec: Any, run_dir: Path | None, main: bool, from_version: str
) -> tuple:
    """The split and prepared arrays; on resume, exactly the revisions the run started with."""
    saved = run_dir / "manifest.json" if run_dir else None
    names = {m.name for m in ws.models.list()}
    if saved is not None and saved.is_file():
        manifest = json.loads(saved.read_text())
        items = items_from_manifest(ws, manifest)
    else:
        snapshot = training_snapshot(ws)
        items = snapshot.for_model(job.model, names)
        manifest = snapshot.manifest(items)
    if not items:
        others = "" if len(names) < 2 else (
            f"; beside other models, {job.model} learns from the images it has proposed on or "
            f"whose truth was imported for it (import-masks --model {job.model})"
        )  # fmt: skip
        raise TrainingError(
            f"no confirmed images to train {job.model} on in {ws.root}: correct or approve "
            f"some images first (unreviewed AI proposals are never used){others}"
        )
    split = split_by_patient(items, job.val_fraction, job.train.seed)
    train, val = prepare(ws, split.train, spec), prepare(ws, split.val, spec)
    skipped = train.skipped + val.skipped
    if len(train) == 0 or len(val) == 0:
        reasons = "; ".join(f"image {i}: {r}" for i, r in skipped[:3])
        raise TrainingError(f"no usable images for training and validation ({reasons})")
    manifest = {
        **manifest, "split": split.manifest(), "skipped": skipped, "trained_from": from_version
    }  # fmt: skip
    if run_dir is not None and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "manifest.json", manifest)
    return split, train, val, manifest


def _compare_and_register(
    ws: Any, job: Job, model: Any, spec: Any, result: Any, split: Any, val: Any,
    manifest: dict, device: Any,
) -> dict[str, Any]:  # fmt: skip
    """Judge the version the clinician uses now on the same held-out images, register the new
    one, and activate it only when asked and it is better."""
    active_metrics, active_version = None, None
    if ws.models.active(job.model) is not None:
        old, old_spec, active_version = load_version(ws, job.model)
        old_val = val if old_spec == spec else prepare(ws, split.val, old_spec)
        active_metrics = evaluate(old, TrainingSet(old_val), old_spec, device, job.train.batch_size)
    better = active_metrics is None or result.metrics["score"] > active_metrics["score"]
    metrics = {
        "validation": result.metrics,
        "compared_with": {"version": active_version, "validation": active_metrics},
        "manifest": {
            "file": "manifest.json",
            "last_revision_id": manifest.get("last_revision_id"),
            "train_images": len(split.train),
            "val_images": len(split.val),
            "grouped_by": split.grouped_by,
        },
        "trained_from": manifest["trained_from"],
        "training": {
            **dataclasses.asdict(job.train),
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "history": result.history,
        },
    }
    mv = register(ws, spec, model, _finite(metrics), manifest)
    activated = bool(job.auto_activate and better)
    if activated:
        ws.models.activate(spec.name, mv.version)
    return _finite(
        {
            "event": "done",
            "version": mv.version,
            "metrics": result.metrics,
            "active_metrics": active_metrics,
            "active_version": active_version,
            "better": better,
            "activated": activated,
        }
    )


def register(ws: Any, spec: Any, model: Any, metrics: dict, manifest: dict) -> Any:
    """A new version folder (weights, spec, metrics, manifest) registered, not yet active."""
    version = next_version(ws, spec.name)
    folder = version_dir(ws, spec.name, version)
    save_checkpoint(folder, model, spec, metrics)
    _write_json(folder / "manifest.json", manifest)
    try:
        return ws.models.register(
            spec.name, version, path=str(folder), spec=spec.to_dict(), metrics=metrics
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _distributed() -> Dist:
    """Join the torchrun group when started by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(local)
    torch.distributed.init_process_group("nccl" if gpu else "gloo")
    return Dist(rank, world, local)


def main(argv: list[str] | None = None, emit: Emit | None = None) -> int:
    """Run the job file named in argv; events go to `emit` (default: JSON lines on stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    rank0 = os.environ.get("RANK", "0") == "0"
    emit = (emit or print_event) if rank0 else (lambda event: None)
    started = time.time()
    try:
        if len(argv) != 1:
            raise TrainingError("usage: python -m medviewer.training JOB.json")
        try:
            data = json.loads(Path(argv[0]).read_text())
        except OSError as e:
            raise TrainingError(f"{argv[0]}: cannot read the job file: {e.strerror}") from e
        except json.JSONDecodeError as e:
            raise TrainingError(f"{argv[0]}: not valid JSON: {e.msg} at line {e.lineno}") from e
        job = Job.from_dict(data)
        run_job(job, emit, _distributed())
        return 0
    except Exception as e:  # noqa: BLE001 - every failure ends as one error event
        emit({"event": "error", "message": _message(e), "seconds": time.time() - started})
        if not _is_human(e):
            traceback.print_exc()  # a bug: the trace goes to stderr, the event to stdout
        return 1
    finally:
        _leave_group()


def _is_human(e: BaseException) -> bool:
    human = (TrainingError, ModelError, WorkspaceError, ImageLoadError, InferenceError, OSError)
    # safetensors reports a full disk as its own error type, with the OS message inside.
    return isinstance(e, human) or "No space left on device" in str(e)


def _message(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}" + (" (free some disk space)" if e.errno == 28 else "")
    return str(e) if _is_human(e) else f"internal error: {type(e).__name__}: {e}"


def _leave_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
