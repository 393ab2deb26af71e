"""Retrain: choose a model and epochs, see the data it will learn from, follow the run live,
then compare the new version with the active one and activate it or keep the current one."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from medviewer.models.spec import ModelSpec
from medviewer.qt.workers import FutureBridge
from medviewer.training.protocol import Batch, Done, Ended, Epoch, Event, Start
from medviewer.workspace.snapshot import training_snapshot

if TYPE_CHECKING:
    from medviewer.training.jobs import JobManager
    from medviewer.workspace import TrainingSnapshot, Workspace
    from medviewer.workspace.model_table import ModelVersion

READING = "reading\u2026"


class JobEvents(QObject):
    """JobManager listeners run on its reader threads; this re-emits on the GUI thread."""

    sig_event = Signal(int, object)  # job id, a medviewer.training.protocol event

    def __call__(self, job_id: int, event: Event) -> None:
        self.sig_event.emit(job_id, event)


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{"dice": {"kidney": 0.8}} -> {"dice / kidney": 0.8}: one table row per number."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix} / {key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _read(ws: Workspace) -> tuple[list[ModelVersion], TrainingSnapshot]:
    """On the dialog's thread: every model version (which are active, their specs) and what
    training would learn from."""
    return ws.models.list(), training_snapshot(ws)


class RetrainDialog(QDialog):
    def __init__(self, ws: Workspace, jobs: JobManager, events: JobEvents, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Retrain")
        self.ws, self.jobs = ws, jobs
        self.job_id: int | None = None
        # Not `self.done`: that would hide QDialog.done(), which accept() calls.
        self.outcome: Done | None = None
        self._started = 0.0
        # Reading the models and training data, starting and cancelling: on a team's server a
        # round trip each, so on one thread of the dialog's (in order), never the GUI thread.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrain")
        self._bridge = FutureBridge()
        self._early: list[tuple[int, Event]] = []  # events heard before the start returned
        self.model = QComboBox()  # filled when the models are read (`_read_done`)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 500)
        self.epochs.setValue(10)
        self._snapshot: TrainingSnapshot | None = None
        self._versions: list[ModelVersion] = []
        self.data = QLabel(READING)
        self.model.currentTextChanged.connect(self._show_data)
        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow("Epochs", self.epochs)
        form.addRow("Data", self.data)
        self.epoch_bar = QProgressBar()
        self.step_bar = QProgressBar()
        self.eta = QLabel("")
        self.plot = pg.PlotWidget(title="loss (train, validation) and validation metric")
        self.plot.addLegend()
        self.plot.setLabel("bottom", "epoch")
        self.curves = {
            name: self.plot.plot([], [], name=name, pen=pen, symbol="o", symbolSize=5)
            for name, pen in (("train loss", "y"), ("val loss", "c"), ("val metric", "g"))
        }
        self.history: dict[str, list[float]] = {name: [] for name in self.curves}
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["metric", "new", "active"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.status = QLabel("")
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.activate_button = QPushButton("Activate new version")
        self.keep_button = QPushButton("Keep current")
        for b in (self.cancel_button, self.activate_button, self.keep_button):
            b.setEnabled(False)
        self.start_button.setEnabled(False)  # until the models and data are read
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.activate_button.clicked.connect(self.activate)
        self.keep_button.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.cancel_button, self.activate_button, self.keep_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for w in (self.epoch_bar, self.step_bar, self.eta, self.plot, self.table, self.status):
            layout.addWidget(w)
        layout.addLayout(buttons)
        events.sig_event.connect(self.on_event)
        self._bridge.watch(self._pool.submit(_read, ws), self._read_done)

    def _read_done(self, future: Future) -> None:
        try:
            self._versions, self._snapshot = future.result()
        except Exception as e:  # noqa: BLE001 - a busy server: shown; reopen to try again
            self.data.setText(f"could not read the models and training data: {e}")
            return
        self.model.addItems(sorted({m.name for m in self._versions if m.active}))
        self._show_data(self.model.currentText())
        self.start_button.setEnabled(self.model.count() > 0 and self.job_id is None)

    def _show_data(self, name: str) -> None:
        """What the chosen model would learn from (its own task's confirmed images)."""
        if self._snapshot is None:
            return  # still reading
        active = next((m for m in self._versions if m.name == name and m.active), None)
        if active is None:
            self.data.setText("")
            return
        models = {m.name for m in self._versions}
        items = self._snapshot.for_model(ModelSpec.from_dict(active.spec), models)
        negatives = sum(1 for i in items if i.is_negative)
        self.data.setText(
            f"{len(items) - negatives} confirmed image(s) with a finding, {negatives} "
            f"negative(s); {self._snapshot.unreviewed} unreviewed in the workspace (not used)"
        )

    def start(self) -> None:
        model, epochs = self.model.currentText(), self.epochs.value()
        self.start_button.setEnabled(False)
        self.status.setText("starting...")
        self.job_id, self._early = None, []
        future = self._pool.submit(self.jobs.start, model, epochs=epochs)
        self._bridge.watch(future, lambda f: self._job_started(f, epochs))

    def _job_started(self, future: Future, epochs: int) -> None:
        try:
            job = future.result()
        except Exception as e:  # noqa: BLE001 - e.g. a job for this model already runs
            self.status.setText(str(e))
            self.start_button.setEnabled(True)
            return
        self.job_id = job.id
        self._started = time.time()
        self.epoch_bar.setRange(0, epochs)
        self.cancel_button.setEnabled(True)
        # Queued: a worker on another machine will run it ("queued for a worker").
        said = job.message if job.state == "queued" and job.message else "started"
        self.status.setText(f"training job {job.id} {said}")
        early, self._early = self._early, []
        for job_id, event in early:
            self.on_event(job_id, event)

    def cancel(self) -> None:
        if self.job_id is not None:
            self.status.setText("cancelling...")
            self._bridge.watch(self._pool.submit(self.jobs.cancel, self.job_id), self._refused)

    def _refused(self, future: Future) -> None:
        if future.exception() is not None:  # e.g. this login may not cancel it
            self.status.setText(str(future.exception()))

    def on_event(self, job_id: int, event: Event) -> None:
        if job_id != self.job_id:
            if self.job_id is None and not self.start_button.isEnabled():
                self._early.append((job_id, event))  # perhaps the job being started
            return
        if isinstance(event, Start):
            self.status.setText(
                f"training on {event.train_images} image(s), validating on "
                f"{event.val_images} ({event.device})"
            )
        elif isinstance(event, Batch):
            self.step_bar.setRange(0, event.steps)
            self.step_bar.setValue(event.step)
        elif isinstance(event, Epoch):
            self._epoch(event)
        elif isinstance(event, Done):
            self.outcome = event
            self._compare(event)
        elif isinstance(event, Ended):
            self.cancel_button.setEnabled(False)
            if event.state != "finished":
                self.status.setText(f"{event.state}: {event.message}")
                self.start_button.setEnabled(True)

    def _epoch(self, event: Epoch) -> None:
        epoch, epochs = event.epoch, event.epochs
        self.epoch_bar.setRange(0, epochs)
        self.epoch_bar.setValue(epoch)
        for name, value in (
            ("train loss", event.train_loss),
            ("val loss", event.val_loss),
            ("val metric", event.val_metric),
        ):
            if isinstance(value, (int, float)):
                self.history[name].append(float(value))
                self.curves[name].setData(
                    list(range(1, len(self.history[name]) + 1)), self.history[name]
                )
        elapsed = time.time() - self._started
        if epoch:
            left = elapsed / epoch * (epochs - epoch)
            self.eta.setText(f"epoch {epoch} of {epochs}, about {left:.0f} s left")

    def _compare(self, done: Done) -> None:
        new = flatten(done.metrics)
        active = flatten(done.active_metrics or {})
        names = sorted(set(new) | set(active))
        self.table.setRowCount(len(names))
        for row, name in enumerate(names):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            for col, source in ((1, new), (2, active)):
                value = source.get(name)
                self.table.setItem(
                    row, col, QTableWidgetItem("" if value is None else f"{value:.3f}")
                )
        activated = done.activated
        self.status.setText(
            f"new version {done.version}"
            + (" is better and was activated" if activated else ": compare, then choose")
        )
        self.activate_button.setEnabled(not activated)
        self.keep_button.setEnabled(True)

    def activate(self) -> None:
        if self.outcome is not None:
            # The main window hears the activation (ws.models.on_activated) and reloads.
            self.ws.models.activate(self.model.currentText(), self.outcome.version)
            self.status.setText(f"version {self.outcome.version} is now active")
            self.accept()
