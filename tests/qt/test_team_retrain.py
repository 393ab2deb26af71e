"""Retraining from the app on a team's PostgreSQL workspace, end to end through the GUI: a
reviewer's window starts a job in the Retrain dialog with real clicks, a real `medviewer worker`
(the worker login, in its own folder: its own machine) runs it, the dialog follows it as it
follows a local job, and the new version appears in the reviewer's model list and in an
annotator's window, which loads it from its own folder. Cancel in the dialog stops the job on
the worker."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QComboBox

from medviewer.models.versions import load_version, version_dir
from medviewer.workspace import Workspace, job_queue
from tests.qt.test_window_reads import gui_queries  # noqa: F401 - a fixture used below
from tests.training import queue_helpers
from tests.training.queue_helpers import (
    make_team,
    quick_heartbeat,  # noqa: F401 (an autouse fixture)
    start_worker,
    stop_workers,
)
from tests.workspace.pg_server import PostgresServer

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
TRAINING_S = 240_000  # ms: one epoch on 2 busy CPU cores, after the worker's start-up


@dataclass(frozen=True)
class Team(queue_helpers.Team):
    reviewer: str
    annotator: str
    worker: str


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer) -> Team:
    """test_ddp's approved 64x64 slices and random model v1 on PostgreSQL, three fresh logins
    granted by `medviewer workspace grant`, and a folder per login naming it."""
    tag = uuid.uuid4().hex[:6]
    logins = {f"tr{tag}": "reviewer", f"ta{tag}": "annotator", f"tw{tag}": "worker"}
    root = tmp_path_factory.mktemp("team-retrain")
    make_team(root, postgres_server, logins)
    return Team(root, *logins)


@pytest.fixture
def worker(team: Team, tmp_path: Path) -> Iterator[subprocess.Popen]:
    """`medviewer worker` as the worker login in its own folder, ready once it beats."""
    ws = team.folder("ws")
    proc = start_worker(ws, tmp_path / "worker.log", folder=team.folder(team.worker))
    yield proc
    stop_workers(ws, [proc])  # the next test's worker beats alone


@pytest.fixture
def open_window(qtbot, team: Team, tmp_path: Path, monkeypatch) -> Iterator[Callable]:
    """A window opener: the login's app on its own folder, as test_team builds it."""
    monkeypatch.setenv("MEDVIEWER_WORKSPACE", str(tmp_path / "user" / "workspace"))
    from medviewer.qt.main_window import MainWindow

    opened: list[tuple[MainWindow, Workspace]] = []

    def open_(login: str) -> MainWindow:
        ws = Workspace.open(team.folder(login))
        settings = QSettings(str(tmp_path / f"{login}.ini"), QSettings.Format.IniFormat)
        settings.setValue("quiet_errors", True)  # no modal boxes in tests
        win = MainWindow(ws, login, settings, device="cpu")
        qtbot.addWidget(win)
        win.resize(1000, 700)
        win.show()
        opened.append((win, ws))
        return win

    yield open_
    for win, ws in opened:
        win.close()
        ws.close()


def listed(win) -> list[str]:
    """The versions the window's model list offers (its combo box per model)."""
    combos = win.models.findChildren(QComboBox)
    return [c.itemText(i) for c in combos for i in range(c.count())]


def test_a_job_started_in_the_dialog_runs_on_the_worker_and_both_windows_list_its_version(
    qtbot,
    team: Team,
    worker: subprocess.Popen,
    open_window,
    gui_queries,  # noqa: F811
) -> None:
    reviewer, annotator = open_window(team.reviewer), open_window(team.annotator)
    qtbot.waitUntil(lambda: listed(reviewer) == ["v1"] and listed(annotator) == ["v1"])
    dialog = reviewer.retrain()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10_000)  # its models and data read
    assert dialog.model.currentText() == "lesion"
    dialog.epochs.setValue(1)
    with gui_queries() as calls:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert calls == []  # the queue is written off the GUI thread
    qtbot.waitUntil(lambda: dialog.job_id is not None, timeout=10_000)
    qtbot.waitUntil(lambda: "queued for a worker" in dialog.status.text(), timeout=10_000)
    assert not dialog.start_button.isEnabled() and dialog.cancel_button.isEnabled()
    job_id = dialog.job_id
    # The worker's events, through the database, drive the same widgets as a local job's.
    qtbot.waitUntil(lambda: dialog.epoch_bar.value() == 1, timeout=TRAINING_S)
    assert dialog.epoch_bar.maximum() == 1 and dialog.step_bar.value() >= 1
    assert len(dialog.history["train loss"]) == 1
    qtbot.waitUntil(lambda: dialog.outcome is not None, timeout=60_000)
    new = dialog.outcome.version
    assert new == "v2" and dialog.table.rowCount() > 0
    assert dialog.keep_button.isEnabled() and dialog.activate_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.cancel_button.isEnabled(), timeout=30_000)
    with Workspace.open(team.folder("ws")) as ws:
        assert ws.jobs.get(job_id).state == "finished"
    # Run on the worker's machine, not the reviewer's.
    assert (team.folder(team.worker) / "jobs" / str(job_id) / "stdout.log").is_file()
    assert not (team.folder(team.reviewer) / "jobs" / str(job_id)).exists()
    # Both windows list it without reopening anything; nobody activated it.
    qtbot.waitUntil(lambda: listed(reviewer) == ["v1", "v2"], timeout=10_000)
    qtbot.waitUntil(lambda: listed(annotator) == ["v1", "v2"], timeout=10_000)
    # The annotator's machine loads it from its own folder (through the blob store).
    with Workspace.open(team.folder(team.annotator)) as ws:
        assert not version_dir(ws, "lesion", new).exists()  # its files are not here yet
        model, spec, version = load_version(ws, "lesion", new)
    assert version == new and spec.name == "lesion" and not model.training


def test_cancel_in_the_dialog_cancels_the_job_on_the_worker(
    qtbot, team: Team, worker: subprocess.Popen, open_window
) -> None:
    reviewer = open_window(team.reviewer)
    dialog = reviewer.retrain()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=10_000)  # its models and data read
    dialog.epochs.setValue(300)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.step_bar.value() >= 1, timeout=TRAINING_S)  # it trains
    job_id = dialog.job_id
    with Workspace.open(team.folder("ws")) as ws:
        before = [m.version for m in ws.models.list("lesion")]
        assert ws.jobs.get(job_id).state == "running"
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.status.text() == "cancelled: cancelled", timeout=60_000)
    assert dialog.start_button.isEnabled() and not dialog.cancel_button.isEnabled()
    with Workspace.open(team.folder("ws")) as ws:
        assert ws.jobs.get(job_id).state == "cancelled"
        assert job_queue.queued(ws, job_id).status == "aborted"  # the worker's task too
        assert [m.version for m in ws.models.list("lesion")] == before
    assert worker.poll() is None  # the worker goes on, ready for the next job
