"""Commands on models: `models list|show|activate|rollback|add` and `infer`.

torch and smp take seconds to import, so they are imported inside the commands that need them:
`medviewer info` and friends stay quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from medviewer.config import default_workspace
from medviewer.workspace import Workspace
from medviewer.workspace.location import workspace_target


def _open(args: argparse.Namespace, *, readonly: bool = False) -> Workspace:
    """`models list` and `show` only read: read-only, so they work on a read-only folder."""
    return Workspace.open(args.workspace or default_workspace(), readonly=readonly)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _metrics(metrics: dict) -> str:
    return json.dumps(metrics, sort_keys=True) if metrics else "-"


def main_metric(metrics: dict) -> float | None:
    """The validation score training compares versions by (None when untrained)."""
    score = (metrics.get("validation") or {}).get("score")
    return float(score) if isinstance(score, (int, float)) else None


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as ws:
        versions = ws.models.list()
    if args.json:
        print(json.dumps([dataclasses.asdict(m) for m in versions], indent=1))
        return 0
    if not versions:
        print("no models (add one with `medviewer models add SPEC.json`)")
        return 0
    rows = [("NAME", "VERSION", "ACTIVE", "TASK", "SCORE", "ADDED")]
    for m in versions:
        score = main_metric(m.metrics)
        rows.append(
            (
                m.name,
                m.version,
                "*" if m.active else "",
                str(m.spec.get("task", "?")),
                "-" if score is None else f"{score:.3f}",
                _when(m.created_at),
            )
        )
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from medviewer.models.errors import ModelError

    with _open(args, readonly=True) as ws:
        versions = ws.models.list(args.name)
        if not versions:
            raise ModelError(f"no model {args.name} in {ws.root}")
    spec = next((m for m in versions if m.active), versions[-1]).spec
    print(
        f"model {args.name}: {spec.get('task')}, {spec.get('architecture') or '-'} "
        f"on {spec.get('encoder')}, input {spec.get('input_size')}, "
        f"{spec.get('in_channels')} channel(s)"
    )
    if spec.get("classes"):
        print("  classes: " + ", ".join(c["name"] for c in spec["classes"]))
    if spec.get("labels"):
        print("  labels: " + ", ".join(spec["labels"]))
    gate = spec.get("gate") or {}
    if gate.get("type", "none") != "none":
        extra = {k: v for k, v in gate.items() if k != "type" and v not in (None, 0)}
        print(f"  gate: {gate['type']} {json.dumps(extra, sort_keys=True)}")
    for m in versions:
        state = (
            "active" if m.active
            else f"activated {_when(m.activated_at)}" if m.activated_at
            else "never active"
        )  # fmt: skip
        print(f"  {m.version}: {state}, added {_when(m.created_at)}, {m.path}")
        print(f"    metrics: {_metrics(m.metrics)}")
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        m = ws.models.activate(args.name, args.version)
    print(f"model {m.name}: version {m.version} is active")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        before = ws.models.active(args.name)
        m = ws.models.rollback(args.name)
    print(f"model {m.name}: rolled back from {before.version if before else '-'} to {m.version}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from medviewer.models.spec import ModelSpec
    from medviewer.models.versions import add_model

    spec = ModelSpec.load(args.spec)
    with _open(args) as ws:
        m = add_model(ws, spec, args.weights, args.version, activate=not args.inactive)
    how = "weights from " + str(args.weights) if args.weights else "random weights (untrained)"
    state = "active" if m.active else "not active"
    print(f"added model {m.name} version {m.version} ({how}); {state}")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    from medviewer.inference.batch import active_models, run_batch
    from medviewer.models.errors import ModelError

    def bar(done: int, total: int) -> None:
        print(
            f"\r  {done}/{total} images",
            end="\n" if done == total else "",
            file=sys.stderr,
            flush=True,
        )

    failed = 0
    with _open(args) as ws:
        names = [args.model] if args.model else active_models(ws)
        if not names:
            raise ModelError(f"no active model in {ws.root}; add one with `medviewer models add`")
        for name in names:
            print(f"model {name}:", file=sys.stderr)
            try:
                r = run_batch(
                    ws,
                    name,
                    device=args.device,
                    batch_size=args.batch_size,
                    on_progress=bar,
                    backend=args.backend,
                )
            except KeyboardInterrupt:
                print(
                    "\ninterrupted; what was proposed is saved, rerun to continue", file=sys.stderr
                )
                return 130
            print(
                f"{r.model} {r.version}: {r.proposed} proposed, {r.skipped} skipped "
                f"(already done), {r.not_applicable} not applicable, {len(r.failed)} failed"
            )
            for image_id, reason in r.failed:
                print(f"  image {image_id}: {reason}")
            if r.backend:
                print(f"  backend: {r.backend}", file=sys.stderr)
            failed += len(r.failed)
    return 1 if failed else 0


def cmd_spread(args: argparse.Namespace) -> int:
    """Label spreading: propose labels for unlabelled images from confirmed neighbours."""
    from medviewer.training.spreading import propose_labels

    with _open(args) as ws:
        report = propose_labels(ws, args.model, threshold=args.threshold, device=args.device)
    print(
        f"{report.model} {report.version}: {report.proposed} label proposal(s) saved as"
        f" ai-propagated (from {report.labelled} confirmed image(s)); {report.low_confidence}"
        f" below {args.threshold}, {report.unchanged} unchanged, {len(report.failed)} failed"
    )
    for image_id, reason in report.failed:
        print(f"  image {image_id}: {reason}")
    print("They enter training only once a clinician approves the image.")
    return 0


def cmd_evaluate_clicks(args: argparse.Namespace) -> int:
    """The click robot over the model's held-out confirmed images: NoC and Dice after clicks."""
    from medviewer.training.click_metrics import evaluate_clicks

    if args.max_clicks < 1:
        print("error: --max-clicks must be at least 1", file=sys.stderr)
        return 2
    with _open(args, readonly=True) as ws:
        m, version, skipped = evaluate_clicks(ws, args.model, args.max_clicks, args.device)
    if args.json:
        print(json.dumps({"model": args.model, "version": version, **m.to_dict(),
                          "skipped": skipped}, indent=1))  # fmt: skip
        return 0

    def num(v: float | None, fmt: str = ".2f") -> str:
        return "-" if v is None else format(v, fmt)

    print(f"{args.model} {version}: {m.objects} held-out object(s), up to {m.max_clicks} clicks")
    print(f"  NoC@85 {num(m.noc85)}  NoC@90 {num(m.noc90)}")
    print("  Dice " + ", ".join(f"{k} click(s) {num(v, '.3f')}" for k, v in m.dice_after.items()))
    print(f"  never reaching 0.90: {num(None if m.never_90 is None else 100 * m.never_90, '.0f')}%")
    for image_id, reason in skipped:
        print(f"  image {image_id} skipped: {reason}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    def workspace_option(p: argparse.ArgumentParser, default: object = None) -> None:
        p.add_argument(
            "--workspace",
            type=workspace_target,
            default=default,
            help="workspace folder (default: $MEDVIEWER_WORKSPACE or user data)",
        )

    models = sub.add_parser("models", help="model versions kept in the workspace")
    workspace_option(models)
    verbs = models.add_subparsers(dest="verb", required=True)

    def verb(name: str, func: object, help: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help)
        # SUPPRESS: given after the verb it counts, but it never resets one given before it.
        workspace_option(p, argparse.SUPPRESS)
        p.set_defaults(func=func)
        return p

    listing = verb("list", cmd_list, "every version of every model; * marks the active ones")
    listing.add_argument("--json", action="store_true", help="the full record of each version")
    verb("show", cmd_show, "spec and versions of one model").add_argument("name")
    act = verb("activate", cmd_activate, "make a version the one that runs")
    act.add_argument("name")
    act.add_argument("version")
    verb("rollback", cmd_rollback, "re-activate the previously active version").add_argument("name")
    add = verb("add", cmd_add, "copy a model (spec + weights) into the workspace")
    add.add_argument("spec", type=Path, help="model spec JSON")
    add.add_argument("--weights", type=Path, help="safetensors/.pth file or checkpoint folder")
    add.add_argument("--version", help="version name (default: next vN)")
    add.add_argument("--inactive", action="store_true", help="register without activating")

    infer = sub.add_parser("infer", help="run active models over every image (resumable)")
    workspace_option(infer)
    infer.add_argument("--model", help="model name (default: every active model)")
    infer.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    infer.add_argument(
        "--batch-size", type=int, help="images per batch (default: 4 on a CPU, a GPU's from memory)"
    )
    infer.add_argument(
        "--backend",
        choices=["auto", "torch", "onnxruntime"],
        help="what runs the model on a CPU: auto (default, or $MEDVIEWER_BACKEND) times both "
        "once per model and machine and keeps the faster; onnxruntime falls back to torch, "
        "saying why, when the exported model disagrees with torch",
    )
    infer.set_defaults(func=cmd_infer)

    clicks = sub.add_parser(
        "evaluate-clicks",
        help="click robot over a guided model's held-out confirmed images: NoC@85/90, Dice",
    )
    workspace_option(clicks)
    clicks.add_argument("--model", required=True, help="a click-guided model (spec guidance)")
    clicks.add_argument("--max-clicks", type=int, default=20, help="clicks per object at most")
    clicks.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    clicks.add_argument("--json", action="store_true", help="the figures as JSON")
    clicks.set_defaults(func=cmd_evaluate_clicks)

    spread = sub.add_parser(
        "spread-labels", help="propose labels for unlabelled images (label spreading)"
    )
    workspace_option(spread)
    spread.add_argument("--model", required=True, help="classification model whose encoder embeds")
    spread.add_argument("--threshold", type=float, default=0.9, help="confidence to propose")
    spread.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    spread.set_defaults(func=cmd_spread)
