"""`medviewer train`: retrain a model on the workspace's confirmed corrections.

The command writes a job file into the workspace (`jobs/<id>/job.json`, checkpoints beside it in
`run/`), runs `python -m medviewer.training` on it as a separate process (as the app does) and
prints its JSON-lines progress for people. A killed run resumes with `--resume jobs/<id>`; a job
that ran on a `medviewer worker` resumes as the app's does (`JobManager.resume`: queued again
while a worker beats).

`--nproc N` runs the job as N torchrun ranks (DDP: one per GPU, or CPU ranks); on several nodes
node 0 runs `--nnodes M --node-rank 0 --rdzv-endpoint HOST:PORT` (HOST: node 0's address) and
every other node joins that job with `--join jobs/<id> --node-rank R` and the same options
(`processes.launch_module` builds torchrun's command). Node 0 records the job and prints its
events; a joining node only runs its ranks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from medviewer.config import default_workspace
from medviewer.processes import LaunchError, Ranks, launch_module, python_module
from medviewer.training.errors import TrainingError
from medviewer.training.jobs import (
    KIND,
    JobError,
    JobManager,
    job_folder,
    rendezvous_id,
    stopped_unexpectedly,
)
from medviewer.training.protocol import (
    JOB_FILE,
    LOSSES,
    VAL_FRACTION,
    Batch,
    Done,
    Epoch,
    Error,
    Event,
    JobRequest,
    Start,
    TrainConfig,
    parse_event,
)
from medviewer.workspace import Workspace, job_queue
from medviewer.workspace.location import workspace_target


def describe(event: Event) -> str | None:
    """One human line for a progress event (None for events not worth a line)."""
    if isinstance(event, Start):
        return (
            f"training {event.model or 'model'} from {event.trained_from or '?'}: "
            f"{event.train_images} training and {event.val_images} validation images "
            f"({event.negatives} negatives) on {event.device}, {event.epochs} epochs"
        )
    if isinstance(event, Epoch):
        score = "-" if event.val_metric is None else f"{event.val_metric:.3f}"
        val_loss = "-" if event.val_loss is None else f"{event.val_loss:.4f}"
        train_loss = "-" if event.train_loss is None else f"{event.train_loss:.4f}"
        return (
            f"epoch {event.epoch}/{event.epochs}: train loss {train_loss}, "
            f"validation loss {val_loss}, score {score} ({event.seconds:.1f} s)"
        )
    if isinstance(event, Done):
        new = event.metrics.get("score")
        old = (event.active_metrics or {}).get("score")
        versus = f" against {old:.3f} for active {event.active_version}" if old is not None else ""
        state = "activated" if event.activated else "not activated"
        score = "-" if new is None else f"{new:.3f}"
        return f"new version {event.version}: score {score}{versus}; {state}"
    if isinstance(event, Error):
        return f"error: {event.message}"
    return None


def _show(event: Event) -> None:
    if isinstance(event, Batch):
        if sys.stdout.isatty():  # a live line on a terminal; logs get the epoch lines only
            loss = "-" if event.loss is None else f"{event.loss:.4f}"
            print(f"\r  epoch {event.epoch} step {event.step}/{event.steps} loss {loss}", end="")
        return
    text = describe(event)
    if text is not None:
        if sys.stdout.isatty():
            print("\r\033[K", end="")
        print(text, file=sys.stderr if isinstance(event, Error) else sys.stdout, flush=True)


def _write_job(ws: Workspace, args: argparse.Namespace) -> tuple[int, Path]:
    job = ws.jobs.create(KIND, args.model)
    folder = job_folder(ws, job.id)
    folder.mkdir(parents=True, exist_ok=True)
    request = JobRequest.create(
        ws.root.resolve(),
        args.model,
        folder / "run",
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        freeze_encoder_epochs=args.freeze_encoder_epochs,
        loss=args.loss,
        val_fraction=args.val_fraction,
        patience=args.patience,
        auto_activate=args.activate_if_better,
        augment=not args.no_augment,
    )
    path = folder / JOB_FILE
    request.write(path)
    return job.id, path


def _run(
    job_file: Path, in_process: bool, on_start: Any = lambda pid: None, ranks: Ranks | None = None
) -> tuple[int, Event | None]:
    """Run a job; (exit code, last event). `on_start(pid)` learns the training process (under
    torchrun, its agent: the leader of the process group)."""
    last: list[Event] = []

    def emit(event: Event) -> None:
        last[:] = [event]
        _show(event)

    if in_process:
        from medviewer.training.__main__ import main

        on_start(os.getpid())
        return main([str(job_file)], emit=emit), (last or [None])[0]
    one = ranks is None or ranks.world == 1
    trainer = (
        python_module("medviewer.training") if one else launch_module("medviewer.training", ranks)
    )
    cmd = [*trainer, str(job_file)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        on_start(proc.pid)
        for line in proc.stdout:
            event = parse_event(line)
            if event is None:
                print(line, end="")  # not ours (a library printing): pass it on
            else:
                emit(event)
        return proc.wait(), (last or [None])[0]


def _ranks(args: argparse.Namespace, job_file: Path | None) -> Ranks:
    """The ranks asked for, meeting at the job's rendezvous (the same id on every node)."""
    rdzv = rendezvous_id(job_file.parent) if job_file is not None else "new"
    ranks = Ranks(args.nproc, args.nnodes, args.node_rank, args.rdzv_endpoint, rdzv)
    ranks.check()
    if args.join and ranks.node_rank == 0:
        raise LaunchError("--join is for the other nodes (--node-rank 1 and up); node 0 starts")
    if ranks.node_rank > 0 and not args.join:
        raise LaunchError(
            f"node {ranks.node_rank} joins the job node 0 started: --join WORKSPACE/jobs/<id>"
        )
    if args.in_process and ranks.world > 1:
        raise LaunchError("--in-process runs one process; leave out --nproc and --nnodes")
    return ranks


def _join(args: argparse.Namespace) -> int:
    """Run this node's ranks of a job node 0 started; node 0 records it and prints its events."""
    folder = Path(args.join)
    job_file = (folder / JOB_FILE if folder.is_dir() else folder).resolve()
    if not job_file.is_file():
        print(f"medviewer train: {job_file}: no job file to join", file=sys.stderr)
        return 2
    ranks = _ranks(args, job_file)
    print(f"job {job_file.parent}: node {ranks.node_rank} of {ranks.nnodes}", file=sys.stderr)
    code, _ = _run(job_file, False, ranks=ranks)
    if code != 0:
        print(f"error: {stopped_unexpectedly(code)}", file=sys.stderr)
    return 0 if code == 0 else 1


def _resume_queued(ws: Workspace, job_id: int, task_id: int, ranks: Ranks) -> int:
    """Resume a job that ran on a worker as the app does (`JobManager.resume`: queued again
    while a worker beats, its checkpoint being on the worker) and print its events as they
    come; Ctrl+C cancels it. `task_id`: the job's last queued task before."""
    jobs = JobManager(ws, on_event=lambda _, event: _show(event))
    try:
        try:
            jobs.resume(job_id, ranks)
        except JobError as e:
            print(f"medviewer train: {e}", file=sys.stderr)
            return 2
        queued = job_queue.queued(ws, job_id)
        where = "queued for a worker" if queued and queued.task_id != task_id else "running here"
        print(f"job {job_id}: {where}", file=sys.stderr)
        try:
            ended = jobs.wait(job_id)
        except KeyboardInterrupt:
            jobs.cancel(job_id, "interrupted")
            ended = jobs.wait(job_id, timeout=60)
        print(f"job {job_id} {ended.state}: {ended.message}", file=sys.stderr)
        return 0 if ended.state == "finished" else 1
    finally:
        jobs.close()


def cmd_train(args: argparse.Namespace) -> int:
    try:
        if args.join:
            return _join(args)
        _ranks(args, None)  # refused before a job is written
    except LaunchError as e:
        print(f"medviewer train: {e}", file=sys.stderr)
        return 2
    with Workspace.open(args.workspace or default_workspace()) as ws:
        if args.resume:
            folder = Path(args.resume)
            # Absolute: a job is known as its trainer's by the job file on its command line.
            # A folder may be missing here: the job ran on a worker, on its machine.
            named = folder.is_file() or folder.name == JOB_FILE
            job_file = (folder if named else folder / JOB_FILE).resolve()
            job_id = int(job_file.parent.name) if job_file.parent.name.isdigit() else None
            ran = job_queue.queued(ws, job_id) if job_id is not None else None
            if job_id is not None and ran is not None:  # ran on a worker
                return _resume_queued(ws, job_id, ran.task_id, _ranks(args, job_file))
        else:
            if not args.model:
                raise SystemExit("medviewer train: --model is required (or --resume JOB)")
            try:
                job_id, job_file = _write_job(ws, args)
            except TrainingError as e:
                print(f"medviewer train: {e}", file=sys.stderr)
                return 2
        print(f"job {job_file.parent}", file=sys.stderr)
        resume = f"continue with `medviewer train --resume {job_file.parent}`"

        def running(pid: int) -> None:
            # Running only with its pid: a running job without one would read as interrupted.
            if job_id is not None:
                ws.jobs.update(job_id, state="running", pid=pid)

        try:
            code, last = _run(job_file, args.in_process, running, _ranks(args, job_file))
        except KeyboardInterrupt:
            if job_id is not None:
                ws.jobs.update(job_id, state="cancelled", message="interrupted")
            print(f"\ninterrupted; {resume}", file=sys.stderr)
            return 130
        ok = code == 0 and isinstance(last, Done)
        if isinstance(last, (Done, Error)):
            message = last.message  # an error event was printed as it came
        else:
            message = stopped_unexpectedly(code)
            print(f"error: {message}; {resume}", file=sys.stderr)
        if job_id is not None:
            ws.jobs.update(
                job_id,
                state="finished" if ok else "failed",
                progress=last.to_dict() if last else {},
                message=message,
            )
    return 0 if ok else 1


def cmd_worker(args: argparse.Namespace) -> int:
    """Take the PostgreSQL workspace's queued training jobs until Ctrl+C / SIGTERM."""
    from medviewer.training.worker import run_worker
    from medviewer.workspace.errors import WorkspaceError
    from medviewer.workspace.roles import require

    try:
        ranks = Ranks(nproc=args.nproc).check()
        Ranks(nnodes=args.nnodes, rdzv_endpoint="host:1").check()  # at least one node
        with Workspace.open(args.workspace or default_workspace()) as ws:
            require(ws, "worker", "take training jobs")  # said now, not midway in procrastinate
            print(f"worker on {ws.where}: {ranks.nproc} process(es) per job", file=sys.stderr)
            run_worker(ws, ranks, name=args.name, nnodes=args.nnodes, host=args.advertise_host,
                       join_timeout=args.join_timeout)  # fmt: skip
    except (LaunchError, WorkspaceError) as e:
        print(f"medviewer worker: {e}", file=sys.stderr)
        return 2
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "worker", help="run a PostgreSQL workspace's queued training jobs on this machine"
    )
    w.add_argument("--workspace", type=workspace_target, help="workspace folder or URL")
    w.add_argument("--nproc", type=int, default=1, help="torchrun ranks per job (one per GPU; DDP)")
    w.add_argument("--name", default=os.uname().nodename if hasattr(os, "uname") else "worker",
                   help="the worker's name in its logs")  # fmt: skip
    w.add_argument("--nnodes", type=int, default=1,
                   help="run each job taken here on this and NNODES-1 other workers (torchrun "
                   "c10d rendezvous hosted here)")  # fmt: skip
    w.add_argument("--advertise-host", help="this machine's address as the other nodes reach "
                   "it (default: its host name)")  # fmt: skip
    w.add_argument("--join-timeout", type=float,
                   help="seconds a job waits for its other nodes (default 120)")  # fmt: skip
    w.set_defaults(func=cmd_worker)
    p = sub.add_parser("train", help="retrain a model on confirmed corrections (new version)")
    p.add_argument(
        "--workspace", type=workspace_target, help="workspace folder (default: user data)"
    )
    p.add_argument("--model", help="model name; training starts from its active version")
    d = TrainConfig()  # the protocol's defaults, shared with the app's Retrain dialog
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    p.add_argument("--loss", choices=LOSSES, default=d.loss)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument(
        "--val-fraction",
        type=float,
        default=VAL_FRACTION,
        help="share of patients held out",
    )
    p.add_argument(
        "--patience", type=int, default=d.patience, help="epochs without improvement (0: off)"
    )
    p.add_argument(
        "--freeze-encoder-epochs", type=int, default=d.freeze_encoder_epochs, help="warm-up epochs"
    )
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--activate-if-better",
        action="store_true",
        help="activate the new version when it beats the active one on the validation images",
    )
    p.add_argument("--resume", type=Path, help="continue a killed job (its folder or job.json)")
    p.add_argument("--in-process", action="store_true", help="train in this process (debugging)")
    p.add_argument(
        "--nproc", type=int, default=1, help="torchrun ranks on this node (one per GPU; DDP)"
    )
    p.add_argument("--nnodes", type=int, default=1, help="nodes that run the job together")
    p.add_argument("--node-rank", type=int, default=0, help="this node (0 starts the job)")
    p.add_argument("--rdzv-endpoint", help="HOST:PORT of node 0's c10d rendezvous (several nodes)")
    p.add_argument(
        "--join", type=Path, help="run this node's ranks of the job node 0 started (its folder)"
    )
    p.set_defaults(func=cmd_train)
