"""Screenshots of the app on a workspace, rendered offscreen: what `medviewer demo` writes when
there is no display, and what the README shows.

    worklist.png        the worklist, AI finding / probability / uncertainty per image
    chest-mask.png      the main window on a chest radiograph with the AI's mask
    fundus-gradcam.png  the main window on a fundus photograph with its Grad-CAM heatmap
    retrain.png         the Retrain dialog after a short real training run

The retraining runs on a copy of the workspace, so the workspace itself gets no new version.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, Qt, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication, QWidget

from medviewer.workspace import Workspace

SIZE = (1400, 900)


class ScreenshotError(Exception):
    """A view did not come up in time or a step failed; the message says which."""


@dataclass(frozen=True)
class Shots:
    """What to show: image ids (None skips that shot) and the model to retrain."""

    chest: int | None
    fundus: int | None
    fundus_label: str | None = None  # the label whose heatmap to show; None: most probable
    retrain_model: str | None = None
    retrain_epochs: int = 3


def write_screenshots(workspace: Path, out: Path, shots: Shots) -> list[Path]:
    """Render the shots of `workspace` into the folder `out`; the paths written, in order."""
    previous = qInstallMessageHandler(_quiet_offscreen)
    try:
        return _write(workspace, out, shots)
    finally:
        qInstallMessageHandler(previous)


def _write(workspace: Path, out: Path, shots: Shots) -> list[Path]:
    app = QApplication.instance() or QApplication(["medviewer"])
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="medviewer-shots-") as tmp:
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        with Workspace.open(workspace, app_lock=True) as ws:
            window = _window(ws, settings)
            try:
                if shots.chest is not None:
                    _open(app, window, shots.chest)
                    written.append(_save(window.worklist.parentWidget(), out / "worklist.png"))
                    written.append(_save(window, out / "chest-mask.png"))
                if shots.fundus is not None:
                    _open(app, window, shots.fundus)
                    _heatmap(app, window, shots.fundus, shots.fundus_label)
                    written.append(_save(window, out / "fundus-gradcam.png"))
            finally:
                _close(app, window)
        if shots.retrain_model is not None:
            copy = Path(tmp) / "workspace"
            shutil.copytree(workspace, copy, ignore=shutil.ignore_patterns("app.lock"))
            with Workspace.open(copy, app_lock=True) as ws:
                window = _window(ws, settings)
                try:
                    dialog = _retrain(app, window, shots.retrain_model, shots.retrain_epochs)
                    written.append(_save(dialog, out / "retrain.png"))
                finally:
                    _close(app, window)
    return written


def _quiet_offscreen(kind: QtMsgType, context: object, message: str) -> None:
    """Qt's offscreen platform warns at every dock and dialog that it cannot size windows;
    that says nothing about the screenshots. Other messages go to stderr as usual."""
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


def _window(ws: Workspace, settings: QSettings):
    from medviewer.qt.main_window import MainWindow

    window = MainWindow(ws, "demo", settings, "cpu")
    window.resize(*SIZE)
    window.show()
    # The triage view: what is left to review, the likeliest findings first.
    window.worklist.status.setCurrentText("To review")
    window.worklist.order.setCurrentText("Highest probability first")
    return window


def _wait(app: QApplication, ready: Callable[[], bool], what: str, timeout: float) -> None:
    """Run the event loop until `ready()`; ScreenshotError naming `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > end:
            raise ScreenshotError(f"{what} did not appear within {timeout:.0f} s")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def _settle(app: QApplication, seconds: float = 0.5) -> None:
    """Let queued repaints (overlays, plots) run before a grab."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def _open(app: QApplication, window, image_id: int) -> None:
    window.open_image(image_id)

    def shown() -> bool:
        state = window.review.state
        return state is not None and state.image.id == image_id

    _wait(app, shown, f"image {image_id}", 60)
    _wait(app, lambda: window.host.runner is not None, "the models", 120)
    _settle(app)


def _heatmap(app: QApplication, window, image_id: int, label: str | None) -> None:
    if label is not None:
        window.labels.heat_combo.setCurrentText(label)
    window.toggle_heatmap()
    _wait(
        app,
        lambda: window._heat_for is not None and window._heat_for[0] == image_id,
        f"the Grad-CAM heatmap of image {image_id}",
        120,
    )
    _settle(app)


def _retrain(app: QApplication, window, model: str, epochs: int) -> QWidget:
    dialog = window.retrain()
    _wait(app, dialog.start_button.isEnabled, "the Retrain dialog's models and data", 60)
    dialog.model.setCurrentText(model)
    dialog.epochs.setValue(epochs)
    dialog.resize(720, 760)
    dialog.start()  # on the dialog's thread: its answer comes as an event
    _wait(app, lambda: dialog.job_id is not None or dialog.start_button.isEnabled(), model, 60)
    if dialog.job_id is None:
        raise ScreenshotError(f"retraining {model} did not start: {dialog.status.text()}")

    def ended() -> bool:
        return dialog.outcome is not None or dialog.start_button.isEnabled()

    _wait(app, ended, f"retraining {model}", 600)
    if dialog.outcome is None:
        raise ScreenshotError(f"retraining {model} failed: {dialog.status.text()}")
    _settle(app)
    return dialog


def _save(widget: QWidget, path: Path) -> Path:
    if not widget.grab().save(str(path)):
        raise ScreenshotError(f"{path}: cannot write the PNG")
    return path


def _close(app: QApplication, window) -> None:
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
    window.close()  # saves, stops the model workers and waits for them
    _settle(app, 0.2)
