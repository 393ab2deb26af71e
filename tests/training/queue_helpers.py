"""The PostgreSQL training queue's test set-up, shared by the queue tests: a team's workspace and
logins, `medviewer worker` subprocesses started and stopped around a test, and a quick heartbeat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace, job_queue
from medviewer.workspace.location import write_workspace_file
from tests.training.test_ddp import make_workspace
from tests.workspace.pg_server import PostgresServer

STALE_S = 4.0  # the worker's heartbeat counts as stopped after this long (here, for speed)


@pytest.fixture(autouse=True)
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers (and the app) treat a heartbeat older than STALE_S as a stopped worker."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MEDVIEWER_WORKER_STALE_S", str(STALE_S))
    monkeypatch.setattr(job_queue, "STALE_S", STALE_S)


@dataclass(frozen=True)
class Team:
    root: Path  # root/ws: the administrator's folder; root/<login>: each login's own machine

    def folder(self, login: str) -> Path:
        return self.root / login


def make_team(root: Path, server: PostgresServer, logins: Mapping[str, str | None]) -> Path:
    """root/ws on a new database with test_ddp's approved slices and model v1; per login a
    PostgreSQL role granted its medviewer role by `medviewer workspace grant` (None: no role),
    and a folder root/<login> whose workspace.json names that login. Returns root/ws."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        url = server.database()
        Workspace.create(root / "ws", database=url).close()
        ws = make_workspace(root)
    for login in logins:  # a role is the server's: another module's team may have made it
        server.admin(
            f"DO $$ BEGIN CREATE ROLE {login} LOGIN; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
    for login, role in logins.items():
        if role:
            grant = ["workspace", "grant", login, "--role", role, "--workspace", str(ws)]
            assert main(grant) == 0
        write_workspace_file(root / login, url.replace("postgres@", f"{login}@"))
    return ws


def start_worker(
    ws: Path, log: Path, *args: str, folder: Path | None = None, beating: int = 1
) -> subprocess.Popen:
    """`medviewer worker --workspace FOLDER ARGS...` (FOLDER: a login's own, else `ws`), its
    output in `log`; returned once `beating` workers' heartbeats show in `ws`: ready for jobs."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "medviewer.cli", "worker", "--workspace", str(folder or ws),
             *args],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    with Workspace.open(ws) as opened:
        while job_queue.live_workers(opened) < beating:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
    return proc


def stop_workers(ws: Path, procs: Iterable[subprocess.Popen]) -> None:
    """SIGTERM (procrastinate's graceful stop) to the workers still running, SIGKILL to any not
    gone within 60 s; then wait until none beats in `ws`, so the next test's workers beat alone."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with Workspace.open(ws) as opened:
        while job_queue.live_workers(opened):
            time.sleep(0.1)
