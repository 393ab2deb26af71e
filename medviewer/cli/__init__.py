"""The `medviewer` command. GUI commands import medviewer.qt lazily, so the rest runs headless."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medviewer import __version__
from medviewer.cli import demo, gui, imaging, model_commands, training, workspace
from medviewer.imaging import ImageLoadError
from medviewer.inference.errors import InferenceError
from medviewer.models.errors import ModelError
from medviewer.processes import run_module_argv
from medviewer.workspace import WorkspaceError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medviewer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"medviewer {__version__}")
    gui.add_gui_options(parser)  # `medviewer` alone opens the app on the last workspace
    parser.set_defaults(func=gui.cmd_gui)
    sub = parser.add_subparsers(dest="command")
    imaging.add_commands(sub)
    workspace.add_commands(sub)
    model_commands.add_commands(sub)
    training.add_commands(sub)
    gui.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if run_module_argv(argv):  # a frozen app's `python -m` (training jobs)
        return 0
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ImageLoadError, WorkspaceError, ModelError, InferenceError) as e:
        # Errors a user can meet are one line naming the file and reason, never a traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2
