"""`medviewer train`: retrain a model on the workspace's confirmed corrections.

The command writes a job file into the workspace (`jobs/<id>/job.json`, checkpoints beside it in
`run/`), runs `python -m medviewer.training` on it as a separate process (as the app does) and
prints its JSON-lines progress for people. A killed run resumes with `--resume jobs/<id>`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from medviewer.config import default_workspace
from medviewer.workspace import Workspace


def describe(event: dict[str, Any]) -> str | None:
    """One human line for a progress event (None for events not worth a line)."""
    kind = event.get("event")
    if kind == "start":
        return (
            f"training {event.get('model', 'model')} from {event.get('trained_from', '?')}: "
            f"{event['train_images']} training and {event['val_images']} validation images "
            f"({event['negatives']} negatives) on {event['device']}, {event['epochs']} epochs"
        )
    if kind == "epoch":
        val = event.get("val_metric")
        score = "-" if val is None else f"{val:.3f}"
        val_loss = "-" if event.get("val_loss") is None else f"{event['val_loss']:.4f}"
        return (
            f"epoch {event['epoch']}/{event['epochs']}: train loss {event['train_loss']:.4f}, "
            f"validation loss {val_loss}, score {score} ({event['seconds']:.1f} s)"
        )
    if kind == "done":
        new = event["metrics"].get("score")
        old = (event.get("active_metrics") or {}).get("score")
        versus = (
            f" against {old:.3f} for active {event.get('active_version')}"
            if old is not None
            else ""
        )
        state = "activated" if event["activated"] else "not activated"
        return f"new version {event['version']}: score {new:.3f}{versus}; {state}"
    if kind == "error":
        return f"error: {event['message']}"
    return None


def _show(event: dict[str, Any]) -> None:
    if event.get("event") == "batch":
        if sys.stdout.isatty():  # a live line on a terminal; logs get the epoch lines only
            line = f"  epoch {event['epoch']} step {event['step']}/{event['steps']} "
            print(f"\r{line}loss {event['loss']:.4f}", end="", flush=True)
        return
    text = describe(event)
    if text is not None:
        if sys.stdout.isatty():
            print("\r\033[K", end="")
        print(text, file=sys.stderr if event.get("event") == "error" else sys.stdout, flush=True)


def _write_job(ws: Workspace, args: argparse.Namespace) -> tuple[int, Path]:
    job = ws.jobs.create("train", args.model)
    folder = ws.root / "jobs" / str(job.id)
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "workspace": str(ws.root.resolve()),
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "device": args.device,
        "seed": args.seed,
        "freeze_encoder_epochs": args.freeze_encoder_epochs,
        "loss": args.loss,
        "val_fraction": args.val_fraction,
        "patience": args.patience,
        "auto_activate": args.activate_if_better,
        "augment": not args.no_augment,
        "run_dir": str((folder / "run").resolve()),
    }
    path = folder / "job.json"
    path.write_text(json.dumps(data, indent=2))
    return job.id, path


def _run(
    job_file: Path, in_process: bool, on_start: Any = lambda pid: None
) -> tuple[int, dict[str, Any]]:
    """Run a job; (exit code, last event). `on_start(pid)` learns the training process."""
    last: dict[str, Any] = {}

    def emit(event: dict[str, Any]) -> None:
        last.clear()
        last.update(event)
        _show(event)

    if in_process:
        from medviewer.training.__main__ import main

        return main([str(job_file)], emit=emit), last
    cmd = [sys.executable, "-m", "medviewer.training", str(job_file)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        on_start(proc.pid)
        for line in proc.stdout:
            try:
                emit(json.loads(line))
            except json.JSONDecodeError:
                print(line, end="")  # not ours (a library printing): pass it on
        return proc.wait(), last


def cmd_train(args: argparse.Namespace) -> int:
    with Workspace.open(args.workspace or default_workspace()) as ws:
        if args.resume:
            folder = Path(args.resume)
            job_file = folder / "job.json" if folder.is_dir() else folder
            job_id = int(job_file.parent.name) if job_file.parent.name.isdigit() else None
        else:
            if not args.model:
                raise SystemExit("medviewer train: --model is required (or --resume JOB)")
            job_id, job_file = _write_job(ws, args)
        print(f"job {job_file.parent}", file=sys.stderr)
        if job_id is not None:
            ws.jobs.update(job_id, state="running")
        try:
            code, last = _run(
                job_file,
                args.in_process,
                lambda pid: job_id is not None and ws.jobs.update(job_id, pid=pid),
            )
        except KeyboardInterrupt:
            if job_id is not None:
                ws.jobs.update(job_id, state="cancelled", message="interrupted")
            print(
                f"\ninterrupted; continue with `medviewer train --resume {job_file.parent}`",
                file=sys.stderr,
            )
            return 130
        ok = code == 0 and last.get("event") == "done"
        if job_id is not None:
            message = last.get("message", "") if not ok else f"version {last.get('version')}"
            ws.jobs.update(
                job_id, state="finished" if ok else "failed", progress=last, message=message
            )
    return 0 if ok else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="retrain a model on confirmed corrections (new version)")
    p.add_argument("--workspace", type=Path, help="workspace folder (default: user data)")
    p.add_argument("--model", help="model name; training starts from its active version")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--loss", choices=["dice+ce", "dice+focal", "ce"], default="dice+ce")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of patients held out")
    p.add_argument("--patience", type=int, default=5, help="epochs without improvement (0: off)")
    p.add_argument("--freeze-encoder-epochs", type=int, default=0, help="warm-up epochs")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--activate-if-better",
        action="store_true",
        help="activate the new version when it beats the active one on the validation images",
    )
    p.add_argument("--resume", type=Path, help="continue a killed job (its folder or job.json)")
    p.add_argument("--in-process", action="store_true", help="train in this process (debugging)")
    p.set_defaults(func=cmd_train)
