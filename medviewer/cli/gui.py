"""`medviewer` (no command) and `medviewer open`: the desktop app. Qt is imported only here,
lazily, so every other command runs without a display."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from medviewer.workspace.location import workspace_target


def _no_display() -> bool:
    return (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
        and os.environ.get("QT_QPA_PLATFORM") not in ("offscreen", "minimal", "vnc", "eglfs")
    )


def cmd_gui(args: argparse.Namespace) -> int:
    if _no_display():
        if not args.screenshot:
            print(
                "error: no display; run on a desktop, or with --screenshot PNG "
                "(rendered offscreen)",
                file=sys.stderr,
            )
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from medviewer.qt.app import run_app

    paths = getattr(args, "paths", ())
    layout = getattr(args, "layout", "single")
    return run_app(args.workspace, paths, args.screenshot, args.device, args.image, layout)


def add_gui_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        type=workspace_target,
        help="workspace folder or postgresql:// URL (default: the last one)",
    )
    parser.add_argument(
        "--screenshot", type=Path, help="render the window to PNG once loaded, then exit"
    )
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda")
    parser.add_argument("--image", type=int, help="open this image (workspace id) first")
    parser.add_argument(
        "--layout",
        choices=("single", "mpr", "2x2"),
        default="single",
        help="1 view, the three planes of the image's volume (mpr), or 2x2",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    gui = sub.add_parser("open", help="import studies and open them in the app")
    gui.add_argument("paths", nargs="*", type=Path)
    add_gui_options(gui)
    gui.set_defaults(func=cmd_gui)
