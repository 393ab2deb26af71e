"""The `medviewer` command. GUI commands import medviewer.qt lazily, so the rest runs headless."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from medviewer import __version__
from medviewer.cli import demo, gui, imaging, model_commands, pacs, training, workspace
from medviewer.config import debug
from medviewer.deid.errors import DeidentificationError
from medviewer.errors import SettingError
from medviewer.imaging import ImageLoadError
from medviewer.inference.errors import InferenceError
from medviewer.models.errors import ModelError
from medviewer.pacs.errors import PacsError
from medviewer.processes import run_module_argv
from medviewer.training.errors import TrainingError
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
    pacs.add_commands(sub)
    gui.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if run_module_argv(argv):  # a frozen app's `python -m` (training jobs)
        return 0
    args = build_parser().parse_args(argv)
    # The one place an error becomes what the user sees: never a traceback unless asked for.
    try:
        code = args.func(args)
        if sys.stdout is not None:  # None in a windowed app
            sys.stdout.flush()  # a closed pipe shows here, not as a warning at exit
        return code
    except BrokenPipeError:
        # `medviewer status | head`: the reader has what it wanted. Exit as a command killed
        # by SIGPIPE would (128 + 13), with nothing left for Python to flush at exit.
        _stdout_to_devnull()
        return 141
    except KeyboardInterrupt:
        if debug():
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    except (
        ImageLoadError,
        WorkspaceError,
        ModelError,
        InferenceError,
        TrainingError,
        SettingError,
        DeidentificationError,
        PacsError,
    ) as e:
        if debug():
            raise
        # Errors a user can meet are one line naming the file and reason.
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else is a bug: one line, the traceback on request
        if debug():
            raise
        what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        print(f"error: {what} (set MEDVIEWER_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _stdout_to_devnull() -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):  # stdout is no file (captured in a test): nothing to flush
        pass
