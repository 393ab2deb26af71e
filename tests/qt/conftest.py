"""GUI tests run headless (offscreen) against a small generated workspace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QSettings, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from medviewer.workspace import Workspace
from tests.imaging.helpers import write_ct_slice


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """Three 64x80 CT slices with an asymmetric bright corner (top-left)."""
    folder = tmp_path / "study"
    folder.mkdir()
    for k in range(3):
        px = np.full((64, 80), 1024, np.int16)  # 0 HU after the -1024 intercept
        px[:8, :12] = 2024 + 100 * k  # bright top-left block: catches flips and transposes
        write_ct_slice(folder / f"s{k}.dcm", px, series_uid="1.2.3.1", position=(0, 0, float(k)))
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    s = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    s.setValue("quiet_errors", True)  # no modal boxes in tests
    return s


@pytest.fixture
def window(qtbot, tmp_path: Path, study: Path, settings: QSettings) -> Iterator:
    from medviewer.qt.main_window import MainWindow

    ws = Workspace.open(tmp_path / "ws", app_lock=True)
    ws.import_paths([study])
    win = MainWindow(ws, "dr.test", settings, device="cpu")
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    win.open_image(ws.images()[0].id)
    qtbot.waitUntil(lambda: win.review.state is not None, timeout=10_000)
    yield win
    win.close()
    ws.close()


def view_point(win, x: float, y: float) -> QPoint:
    """Widget coordinates of image pixel (x, y) in the view."""
    scene = win.view.box.mapViewToScene(QPointF(x, y))
    return win.view.mapFromScene(scene)


def send_mouse(widget, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton, buttons) -> None:
    event = QMouseEvent(
        kind,
        QPointF(pos),
        QPointF(widget.mapToGlobal(pos)),
        button,
        buttons,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


def drag(win, points: list[tuple[float, float]], button=Qt.MouseButton.LeftButton) -> None:
    """A mouse drag through image pixels (x, y), as a hand would do it."""
    vp = win.view.viewport()
    pts = [view_point(win, x, y) for x, y in points]
    send_mouse(vp, QEvent.Type.MouseButtonPress, pts[0], button, button)
    for p in pts[1:]:
        send_mouse(vp, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button)
    send_mouse(vp, QEvent.Type.MouseButtonRelease, pts[-1], button, Qt.MouseButton.NoButton)
