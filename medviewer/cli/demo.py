"""`medviewer demo`: build the demo workspace (studies, three trained models, proposals) once,
then open the app on it; headless, print its summary and render a screenshot."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_SHOTS = Path("demo-output")
DR = "diabetic retinopathy"


def _headless() -> bool:
    """No screen to show a window on. Unlike `medviewer --screenshot`, QT_QPA_PLATFORM=offscreen
    (which the Makefile exports) does not count as a display: the app would run unseen."""
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("QT_QPA_PLATFORM") in ("minimal", "vnc", "eglfs"):
        return False
    return not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")


def cmd_demo(args: argparse.Namespace) -> int:
    from medviewer.demo.build import build_demo

    summary = build_demo(args.workspace, seed=args.seed, small=args.small, on_epoch=_bar)
    print("\n".join(summary.lines()))
    if args.no_gui:
        return 0
    shots = _shots(args.workspace)
    headless = _headless()
    if headless or args.screenshot is not None:
        out = args.screenshot or DEFAULT_SHOTS
        if headless:
            print(f"no display: writing screenshots of the app to {out}/ instead of opening it")
        # Before the first Qt import: no QApplication exists yet in this process.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        from medviewer.qt.screenshots import ScreenshotError, write_screenshots

        try:
            written = write_screenshots(args.workspace, out, shots)
        except ScreenshotError as e:
            print(f"error: screenshots: {e}", file=sys.stderr)
            return 2
        print("wrote " + ", ".join(str(p) for p in written))
        if headless:
            print("on a desktop, `medviewer demo` opens the app on this workspace")
        return 0
    from medviewer.qt.app import run_app  # Qt only when there is a window to show

    return run_app(args.workspace, (), None, "auto", shots.chest)


def _bar(task: str, epoch: int, epochs: int, score: float | None) -> None:
    """One line per model, redrawn each epoch on a terminal; nothing when piped (the
    "training the ... model" lines say enough in a log)."""
    if not sys.stdout.isatty():
        return
    width = 30
    filled = round(width * epoch / epochs)
    score_text = f"  validation {score:.2f}" if score is not None else ""
    line = f"\r  {task:<8} [{'#' * filled}{'.' * (width - filled)}] {epoch}/{epochs}{score_text}"
    print(line, end="\n" if epoch == epochs else "", flush=True)


def _shots(workspace: Path):
    """Where the demo opens and what its screenshots show: the unreviewed chest radiograph the
    AI rates most likely to show a pneumothorax (else any unreviewed image with a proposal),
    and the unreviewed fundus photograph it rates most likely to show diabetic retinopathy."""
    from medviewer.qt.screenshots import Shots
    from medviewer.workspace import ImageQuery, Workspace

    with Workspace.open(workspace, readonly=True) as ws:
        todo = ws.images(ImageQuery(status=["unreviewed"]))
        rows = [r for r in todo if r.ai_uncertainty is not None]  # every proposal has one
        chest = max((r for r in rows if r.modality == "CR"), default=None, key=_probability)
        chest = chest or max(rows, default=None, key=_probability)
        fundus, best = None, -1.0
        for r in rows:
            if "/fundus/" not in Path(r.path).as_posix():
                continue
            labels = ws.revisions.original(r.id, "labels")  # the AI proposal
            p = (labels.summary.get("probabilities") or {}).get(DR, -1.0) if labels else -1.0
            if p > best:
                fundus, best = r.id, p
    return Shots(
        chest=chest.id if chest else None,
        fundus=fundus,
        fundus_label=DR if fundus is not None else None,
        retrain_model="chest-pneumothorax" if chest is not None else None,
    )


def _probability(row) -> float:
    return row.ai_probability if row.ai_probability is not None else -1.0


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="build the demo workspace (studies, models, proposals) and open it"
    )
    demo.add_argument(
        "--workspace", type=Path, default=Path("demo-workspace"), help="default ./demo-workspace"
    )
    demo.add_argument("--no-gui", action="store_true", help="build, print the summary, exit")
    demo.add_argument(
        "--screenshot",
        "--screenshots",
        type=Path,
        metavar="DIR",
        help="write screenshots of the app to DIR instead of opening it (without a display: "
        f"always, default ./{DEFAULT_SHOTS})",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated studies")
    demo.add_argument("--small", action="store_true", help="a tiny demo (tests, quick looks)")
    demo.set_defaults(func=cmd_demo)
