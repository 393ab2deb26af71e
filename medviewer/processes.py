"""Processes a workspace meets: how a module is started (alone, or as torchrun ranks), is a pid
still ours and alive, and killing a whole job's tree.

Used by the blob store (temp files of dead writers), the training job manager and `medviewer
train`.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from dataclasses import dataclass
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


class LaunchError(ValueError):
    """A distributed launch asked for is impossible (no ranks, a node rank out of range, ...)."""


@dataclass(frozen=True)
class Ranks:
    """The processes one job runs as: `nproc` per node on `nnodes` nodes. One process in all is
    a plain `python -m`; more are torchrun's ranks (one per GPU, or gloo ranks on the CPU). On
    several nodes every node runs the same command with its own `node_rank` and the same
    `rdzv_endpoint` (HOST:PORT of node 0, which hosts the c10d rendezvous store) and `rdzv_id`."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "medviewer"
    join_timeout: int | None = None  # seconds the nodes wait for each other (torchrun's: 600)

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes

    def check(self) -> Ranks:
        if self.nproc < 1 or self.nnodes < 1:
            raise LaunchError(
                f"a job needs at least one process on one node, not {self.nproc} on {self.nnodes}"
            )
        if not 0 <= self.node_rank < self.nnodes:
            raise LaunchError(
                f"node rank {self.node_rank} is out of range for {self.nnodes} node(s) "
                f"(0 to {self.nnodes - 1})"
            )
        if self.nnodes > 1:
            host, _, port = (self.rdzv_endpoint or "").rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise LaunchError(
                    f"{self.nnodes} nodes meet at a rendezvous endpoint HOST:PORT (node 0's "
                    f"address and a free port), not {self.rdzv_endpoint!r}"
                )
        return self


def launch_module(module: str, ranks: Ranks | None = None) -> list[str]:
    """The command line that runs `module` as `ranks` say: `python_module(module)` for one
    process, else torchrun (itself a `python -m`) with `--no-python` starting each rank as
    `python_module(module)`, so the venv and the frozen app start ranks as they start one job.
    The module is told its node rank (`--node-rank R`, before the caller's arguments): with c10d
    the global ranks are handed out in no fixed order, and the module decides by it which rank
    on which node leads (`training.__main__`)."""
    ranks = (ranks or Ranks()).check()
    if ranks.world == 1:
        return python_module(module)
    run = [*python_module("torch.distributed.run"), f"--nproc-per-node={ranks.nproc}"]
    if ranks.nnodes == 1:
        # A rendezvous on a free loopback port of its own: no port to choose or collide on.
        run += ["--standalone", "--nnodes=1"]
    else:
        host = "true" if ranks.node_rank == 0 else "false"  # node 0 hosts the store
        run += [
            f"--nnodes={ranks.nnodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={ranks.rdzv_endpoint}",
            f"--rdzv-id={ranks.rdzv_id}",
            f"--rdzv-conf=is_host={host}"
            + (f",join_timeout={ranks.join_timeout}" if ranks.join_timeout else ""),
        ]
    return [*run, "--no-python", *python_module(module), "--node-rank", str(ranks.node_rank)]


def tethered(command: list[str], grace: float) -> list[str]:
    """`command` run under `medviewer.tether`: its whole tree (torchrun's ranks, each in a
    session of its own, included) ends when this process dies, even by SIGKILL, or when the
    tether gets SIGTERM/SIGINT (SIGKILL after `grace` seconds). Linux only (/proc, prctl);
    elsewhere the command as it is."""
    if not sys.platform.startswith("linux"):
        return command
    return [*python_module("medviewer.tether"), str(os.getpid()), str(grace), "--", *command]


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
