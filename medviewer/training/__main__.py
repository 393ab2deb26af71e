"""`python -m medviewer.training [--node-rank R] JOB.json`: one retraining job, progress as JSON
lines on stdout.

Runs alone or as torchrun's ranks (`processes.launch_module` builds the command: one node with
`--standalone`, several over a c10d rendezvous; DDP: gloo on the CPU, nccl with one GPU per
local rank). Each rank trains on its DistributedSampler share, gradients are averaged by DDP and
the training loss over ranks; one rank, the leader (`Dist.leader`: local rank 0 of node 0, node
0 being `--node-rank 0`, else torchrun's GROUP_RANK 0), validates, broadcasts the score so all
ranks stop together, prints the events, writes checkpoints and registers the new version: its
node's stdout carries the job's whole event stream. Other ranks print their failure to stderr.
A rank that dies ends the job on every rank: torchrun stops a node's other ranks, and ranks on
other nodes fail at their next collective (a closed connection at once, a hung peer after
MEDVIEWER_DDP_TIMEOUT_S seconds, else torch's 30 minutes) with one clear error. Errors a user
can fix are one {"event": "error"} line and exit code 1, never a traceback.

The job file and the events are defined in `medviewer.training.protocol` (JobRequest and one
type per event); the version is registered by `medviewer.models.versions.register_version`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from medviewer.atomic import atomic_write_json
from medviewer.imaging import ImageLoadError
from medviewer.inference.errors import InferenceError
from medviewer.models.errors import ModelError
from medviewer.models.versions import MANIFEST, learnt_from, load_version, register_version
from medviewer.training.click_metrics import with_click_score
from medviewer.training.data import TrainingSet, items_from_manifest, prepare, split_by_patient
from medviewer.training.errors import TrainingError
from medviewer.training.metrics import evaluate
from medviewer.training.protocol import (
    Done,
    Error,
    Event,
    JobRequest,
    Start,
    finite,
    read_result,
    write_result,
)
from medviewer.training.trainer import Dist, Emit, device_for, fit
from medviewer.workspace import Workspace, WorkspaceError, training_snapshot
from medviewer.workspace.location import WORKSPACE_FILE
from medviewer.workspace.store import DB_NAME


def print_event(event: Event) -> None:
    print(event.to_json(), flush=True)


def run_job(
    job: JobRequest,
    emit: Emit = print_event,
    dist: Dist | None = None,
    after_epoch: Callable[[int], None] | None = None,
) -> Done | None:
    """Snapshot -> split -> train -> compare with the active version -> register a version.

    Returns the Done event (also emitted; None on ranks other than 0). A run_dir that already
    holds a registered result returns it again instead of training twice."""
    dist = dist or Dist()
    run_dir = Path(job.run_dir) if job.run_dir else None
    done = read_result(run_dir) if run_dir is not None else None
    if done is not None:
        emit(done)
        return done
    folder = Path(job.workspace)
    if not ((folder / DB_NAME).is_file() or (folder / WORKSPACE_FILE).is_file()):
        raise TrainingError(f"{job.workspace}: no medviewer workspace here ({DB_NAME} is missing)")
    with Workspace.open(job.workspace) as ws:
        model, spec, from_version = load_version(ws, job.model)
        split, train, val, manifest = _data(ws, job, spec, run_dir, dist.main, from_version)
        device = device_for(job.train.device, dist)
        emit(
            Start(
                epochs=job.train.epochs,
                train_images=len(train),
                val_images=len(val),
                negatives=int(train.negative.sum() + val.negative.sum()),
                device=str(device),
                model=job.model,
                trained_from=from_version,
                world_size=dist.world,
                skipped=len(manifest["skipped"]),
            )
        )
        kw = {"emit": emit, "run_dir": run_dir, "dist": dist, "after_epoch": after_epoch}
        result = fit(model, spec, train, val, job.train, **kw)
        if not dist.main:
            return None
        model.load_state_dict(result.state)
        done = _compare_and_register(ws, job, model, spec, result, split, val, manifest, device)
    if run_dir is not None:
        write_result(run_dir, done)
    emit(done)
    return done


def _data(
    ws: Workspace, job: JobRequest, spec: Any, run_dir: Path | None, main: bool, from_version: str
) -> tuple:
    """The split and prepared arrays; on resume, exactly the revisions the run started with."""
    saved = run_dir / MANIFEST if run_dir else None
    names = {m.name for m in ws.models.list()}
    if saved is not None and saved.is_file():
        manifest = json.loads(saved.read_text())
        items = items_from_manifest(ws, manifest)
        seen = set(manifest.get("learnt_by_active", []))
    else:
        snapshot = training_snapshot(ws)
        items = snapshot.for_model(spec, names)
        manifest = snapshot.manifest(items)
        # The version this one starts from and is compared with: validate on patients it never
        # learnt from, so the comparison is fair.
        seen = learnt_from(ws, job.model, from_version)
    if not items:
        others = "" if len(names) < 2 else (
            f"; beside other models, {job.model} learns from the images it has proposed on or "
            f"whose truth was imported for it (import-masks --model {job.model})"
        )  # fmt: skip
        raise TrainingError(
            f"no confirmed images to train {job.model} on in {ws.root}: correct or approve "
            f"some images first (unreviewed AI proposals are never used){others}"
        )
    split = split_by_patient(items, job.val_fraction, job.train.seed, seen)
    train, val = prepare(ws, split.train, spec), prepare(ws, split.val, spec)
    skipped = train.skipped + val.skipped
    if len(train) == 0 or len(val) == 0:
        reasons = "; ".join(f"image {i}: {r}" for i, r in skipped[:3])
        raise TrainingError(f"no usable images for training and validation ({reasons})")
    manifest = {
        **manifest, "split": split.manifest(), "skipped": skipped, "trained_from": from_version,
        "learnt_by_active": sorted(seen),
    }  # fmt: skip
    if run_dir is not None and main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / MANIFEST, manifest)
    return split, train, val, manifest


def _compare_and_register(
    ws: Any, job: JobRequest, model: Any, spec: Any, result: Any, split: Any, val: Any,
    manifest: dict, device: Any,
) -> Done:  # fmt: skip
    """Judge the version the clinician uses now on the same held-out images, register the new
    one, and activate it only when asked and it is better."""
    active_metrics, active_version = None, None
    if ws.models.active(job.model) is not None:
        old, old_spec, active_version = load_version(ws, job.model)
        old_val = val if old_spec == spec else prepare(ws, split.val, old_spec)
        active_metrics = evaluate(old, TrainingSet(old_val), old_spec, device, job.train.batch_size)
        # A guided version is judged with clicks too, as the trainer scores the new one.
        active_metrics = with_click_score(old, old_val, active_metrics, old_spec, device,
                                          job.train.batch_size)  # fmt: skip
    better = active_metrics is None or result.metrics["score"] > active_metrics["score"]
    metrics = {
        "validation": result.metrics,
        "compared_with": {"version": active_version, "validation": active_metrics},
        "manifest": {
            "file": MANIFEST,
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
    activated = bool(job.auto_activate and better)
    mv = register_version(ws, spec, model, finite(metrics), manifest=manifest, activate=activated)
    return Done(
        version=mv.version,
        metrics=result.metrics,
        active_metrics=active_metrics,
        active_version=active_version,
        better=better,
        activated=activated,
    )


def _distributed(preference: str = "auto", node_rank: int | None = None) -> Dist:
    """Join the torchrun group when started by torchrun (WORLD_SIZE > 1): nccl with one GPU per
    rank (its LOCAL_RANK) when the job's device is a GPU, gloo on the CPU when it is the CPU,
    whether or not the machine has GPUs. More ranks on this machine than GPUs is refused (by
    `device_for`, with both counts) before anything joins the group. On several nodes the
    ranks agree which of them leads (`_leads`; exactly one must)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dist = Dist(rank, world, local)
    device = device_for(preference, dist, int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = os.environ.get("MEDVIEWER_DDP_TIMEOUT_S")
    if timeout:
        torch.distributed.init_process_group(backend, timeout=timedelta(seconds=float(timeout)))
    else:
        torch.distributed.init_process_group(backend)
    if int(os.environ.get("GROUP_WORLD_SIZE", "1")) == 1:
        return dist  # one node: its rank 0 leads
    # c10d numbers the nodes in no fixed order: find the global rank of node 0's local rank 0.
    leads = _leads(node_rank)
    found = torch.tensor([rank if leads else 0, int(leads)], device=device)
    torch.distributed.all_reduce(found)
    leader, leaders = (int(v) for v in found.tolist())
    if leaders != 1:
        raise TrainingError(
            f"{leaders} nodes of this job were started as node 0; start each node with its "
            "own node rank (medviewer train --node-rank R), node 0 on the rendezvous host"
        )
    return dataclasses.replace(dist, leader=leader)


def _node_rank(argv: list[str]) -> tuple[int | None, list[str]]:
    """`--node-rank R` (put first by `processes.launch_module`) and the arguments after it."""
    if len(argv) >= 2 and argv[0] == "--node-rank" and argv[1].isdigit():
        return int(argv[1]), argv[2:]
    return None, argv


def _leads(node_rank: int | None) -> bool:
    """Is this process the job's leader (see the module docstring)? Known before any group is
    joined, so the leader alone reports even a failure to join."""
    if node_rank is None:
        node_rank = int(os.environ.get("GROUP_RANK", "0"))
    return node_rank == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def main(argv: list[str] | None = None, emit: Emit | None = None) -> int:
    """Run the job file named in argv; events go to `emit` (default: JSON lines on stdout)."""
    argv = sys.argv[1:] if argv is None else argv
    node_rank, argv = _node_rank(argv)
    leads = _leads(node_rank)
    emit = (emit or print_event) if leads else (lambda event: None)
    started = time.time()
    try:
        if len(argv) != 1:
            raise TrainingError("usage: python -m medviewer.training [--node-rank R] JOB.json")
        job = JobRequest.read(argv[0])
        run_job(job, emit, _distributed(job.train.device, node_rank))
        return 0
    except Exception as e:  # noqa: BLE001 - every failure ends as one error event
        emit(Error(message=_message(e), seconds=time.time() - started))
        if not leads:  # only the leader prints events; the others say why on stderr
            print(f"training rank {os.environ.get('RANK')}: {_message(e)}", file=sys.stderr)
        if not _is_human(e):
            traceback.print_exc()  # a bug: the trace goes to stderr, the event to stdout
        return 1
    finally:
        _leave_group()


def _is_human(e: BaseException) -> bool:
    human = (TrainingError, ModelError, WorkspaceError, ImageLoadError, InferenceError, OSError)
    if _lost_peer(e):
        return True
    # safetensors reports a full disk as its own error type, with the OS message inside.
    return isinstance(e, human) or "No space left on device" in str(e)


def _lost_peer(e: BaseException) -> bool:
    """A collective failed: another rank of the job died, hung past the timeout, or cannot be
    reached (torch.distributed's errors; gloo reports a dead peer as a closed connection)."""
    dist_error = getattr(torch.distributed, "DistError", ())
    return isinstance(e, dist_error) or (
        isinstance(e, RuntimeError) and "gloo" in str(e).lower() and "connection" in str(e).lower()
    )


def _message(e: BaseException) -> str:
    if _lost_peer(e):
        # gloo's first line, less its source location ("[.../pair.cc:561] Connection closed
        # by peer [127.0.0.1]:47276. This is typically ...").
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]
        return (
            f"another training process of this job stopped or cannot be reached (this is rank "
            f"{os.environ.get('RANK')} of {os.environ.get('WORLD_SIZE')}), so the job stopped on "
            f"every rank; resume it once all nodes are up ({type(e).__name__}: {first})"
        )
    if isinstance(e, OSError) and e.strerror:
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror}" + (" (free some disk space)" if e.errno == 28 else "")
    return str(e) if _is_human(e) else f"internal error: {type(e).__name__}: {e}"


def _leave_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
