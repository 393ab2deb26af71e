"""`medviewer demo`: build the demo workspace (studies, three trained models, proposals) once,
then open the app on it; headless, print its summary and render a screenshot."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


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

    summary = build_demo(args.workspace, seed=args.seed, small=args.small)
    print("\n".join(summary.lines()))
    if args.no_gui:
        return 0
    first = _first_to_review(args.workspace)
    if _headless():
        out = args.screenshots / "main-window.png"
        print(f"no display: rendering the main window offscreen to {out}")
        args.screenshots.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        cmd = [sys.executable, "-m", "medviewer.cli", "--workspace", str(args.workspace)]
        cmd += ["--image", str(first)] if first is not None else []
        rc = subprocess.run([*cmd, "--screenshot", str(out)], env=env, check=False).returncode
        if rc != 0 or not out.is_file():
            print(f"error: the screenshot failed (exit code {rc})", file=sys.stderr)
            return rc or 2
        print(f"wrote {out}; on a desktop, `medviewer demo` opens the app instead")
        return 0
    from medviewer.qt.app import run_app  # Qt only when there is a window to show

    return run_app(args.workspace, (), None, "auto", first)


def _first_to_review(workspace: Path) -> int | None:
    """Open the demo where the work is: the unreviewed chest radiograph the AI rates most likely
    to show a pneumothorax, with its proposed mask; else any unreviewed image with a proposal."""
    from medviewer.workspace import ImageQuery, Workspace

    with Workspace.open(workspace, readonly=True) as ws:
        for modality in ("CR", None):
            query = ImageQuery(
                status=["unreviewed"], modality=modality, order="probability", descending=True
            )
            rows = [r for r in ws.images(query) if r.ai_probability is not None]
            if rows:
                return rows[0].id
    return None


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo", help="build the demo workspace (studies, models, proposals) and open it"
    )
    demo.add_argument(
        "--workspace", type=Path, default=Path("demo-workspace"), help="default ./demo-workspace"
    )
    demo.add_argument("--no-gui", action="store_true", help="build, print the summary, exit")
    demo.add_argument(
        "--screenshots",
        type=Path,
        default=Path("demo-output"),
        help="where screenshots go when there is no display (default ./demo-output)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated studies")
    demo.add_argument("--small", action="store_true", help="a tiny demo (tests, quick looks)")
    demo.set_defaults(func=cmd_demo)
