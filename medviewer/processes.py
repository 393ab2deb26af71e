"""Processes a workspace meets: is a pid still ours and alive, and killing a whole job's tree.

Used by the blob store (temp files of dead writers) and the training job manager.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

RUN_MODULE = "--run-module"  # how a frozen (PyInstaller) app runs `python -m MODULE`


def python_module(module: str) -> list[str]:
    """The command line of `python -m module` for this install. A frozen app has no Python
    interpreter: its executable runs the module itself when given RUN_MODULE (see main)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, RUN_MODULE, module]
    return [sys.executable, "-m", module]


def run_module_argv(argv: list[str]) -> bool:
    """`medviewer --run-module MODULE ARGS...` (what python_module gives a frozen app): run the
    module as __main__ with ARGS and return True; False for any other command line."""
    if len(argv) < 2 or argv[0] != RUN_MODULE:
        return False
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    return True


def new_group_options() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


def signal_tree(pid: int, sig: int) -> None:
    """Signal the process group the job leads (its pid is the group id: a new session)."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True)
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    if os.name == "nt":
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # Zombies (exited, not yet reaped) answer too; they hold nothing.
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def pid_alive(pid: int) -> bool:
    """Is a process with this pid running (zombies count as gone)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def is_our_job(pid: int, job_file: Path) -> bool:
    """Is `pid` alive and running this job file (not a stranger who got the pid since)?"""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
        args = cmdline.split("\0")
    except OSError:
        if os.name == "nt":
            return False
        ps = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True
        )
        args = ps.stdout.split()
    return str(job_file) in args or str(job_file.resolve()) in args
