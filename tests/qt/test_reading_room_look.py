"""The viewer's face (issue 14): class palette, corner annotations, theme, cheat sheet (F1) from
the one shortcut table, and the worklist's model column and names for unnamed patients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QKeySequence, QPalette, QWheelEvent
from PySide6.QtWidgets import QApplication

from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model
from medviewer.qt import keymap
from medviewer.qt.panels.worklist import COLUMNS, MODEL_COLUMN
from tests.imaging.helpers import write_ct_slice
from tests.qt.conftest import drag, view_point


@pytest.fixture(autouse=True)
def every_mouse_move():
    """pyqtgraph drops mouse moves closer than 10 ms apart (its mouseRateLimit); synthetic
    drags come faster than a hand, so each move must count, whatever the clock says."""
    before = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", 0)
    yield
    pg.setConfigOption("mouseRateLimit", before)


def _wheel(win, steps: int) -> None:
    """A real wheel turn over the image (negative: towards the user, the next slice)."""
    vp = win.view.viewport()
    pos = QPointF(view_point(win, 40, 32))
    event = QWheelEvent(
        pos, QPointF(vp.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
        False,
    )  # fmt: skip
    QApplication.sendEvent(vp, event)


def test_pressing_2_highlights_class_2_in_the_palette(window, qtbot) -> None:
    palette = window.class_palette
    assert palette.list.currentItem().data(Qt.ItemDataRole.UserRole) == 1
    qtbot.keyClick(window, Qt.Key.Key_2)
    current = palette.list.currentItem()
    assert current.data(Qt.ItemDataRole.UserRole) == 2 and current.isSelected()
    assert current.text().startswith("2  ")
    items = [palette.list.item(k) for k in range(palette.list.count())]
    assert [i.isSelected() for i in items] == [False, True]
    # A click on the palette chooses the class the same way.
    palette.list.itemClicked.emit(palette.list.item(0))
    assert window.tools.value == 1


def test_corners_show_slice_and_window_and_follow_the_wheel(window, qtbot) -> None:
    corners = window.corners
    # The place in the series is read off the GUI thread: it follows the image by a moment.
    qtbot.waitUntil(lambda: "Slice 1/3" in corners.text("bottom_left"), timeout=10_000)
    assert "W " in corners.text("bottom_left") and "L " in corners.text("bottom_left")
    assert "Test, Patient" in corners.text("top_left") and "ID P1" in corners.text("top_left")
    assert "Zoom" in corners.text("bottom_right")
    _wheel(window, -1)
    qtbot.waitUntil(lambda: "Slice 2/3" in corners.text("bottom_left"), timeout=10_000)
    before = corners.text("bottom_left").splitlines()[1]
    drag(window, [(40, 30), (60, 10), (80, 0)], button=Qt.MouseButton.RightButton)
    after = corners.text("bottom_left").splitlines()[1]
    assert after != before and after.startswith("W ")
    assert window.view.window.width != float(before.split()[1])


def test_dark_by_default_switchable_and_remembered(window, qtbot, settings) -> None:
    def lightness() -> int:
        return QApplication.instance().palette().color(QPalette.ColorRole.Window).lightness()

    assert lightness() < 80 and window.theme_actions["dark"].isChecked()
    window.theme_actions["light"].trigger()
    assert lightness() > 180 and settings.value("theme") == "light"
    window.theme_actions["dark"].trigger()
    assert lightness() < 80 and settings.value("theme") == "dark"


def test_f1_lists_every_shortcut_of_the_one_table(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_F1)
    sheet = window._cheat_sheet
    assert sheet is not None and sheet.isVisible()
    listed = sheet.texts()
    for s in keymap.SHORTCUTS:
        assert (keymap.key_text(s.command), s.text) in listed
    assert ("Right-drag", "Window / level (across: width, up and down: level)") in listed
    # The same table binds the keys and writes the tooltips.
    for s in keymap.SHORTCUTS:
        if s.command == "class":
            continue
        action = window.actions_by_command[s.command]
        assert [k.toString() for k in action.shortcuts()] == [
            QKeySequence(k).toString() for k in s.keys
        ]
        assert action.toolTip().endswith(f"({keymap.key_text(s.command)})")
    assert window.tool_actions["brush"].toolTip() == "Brush (B)"


def test_no_key_is_bound_twice(window) -> None:
    keys = [
        k.toString()
        for a in window.findChildren(type(window.tool_actions["brush"]))
        for k in a.shortcuts()
    ]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


def test_brush_outline_follows_the_cursor_with_its_size(window, qtbot) -> None:
    from PySide6.QtCore import QEvent

    from tests.qt.conftest import send_mouse

    vp = window.view.viewport()
    send_mouse(
        vp, QEvent.Type.MouseMove, view_point(window, 30, 20), Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
    )  # fmt: skip
    cursor = window.tools.cursor
    assert cursor.isVisible()
    rect = cursor.rect()
    assert rect.center().x() == pytest.approx(30.5, abs=0.6)
    assert rect.width() == pytest.approx(2 * window.tools.radius + 1)
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert cursor.rect().width() == pytest.approx(2 * window.tools.radius + 1)
    # The size in pixels and mm (Pixel Spacing 0.7 x 0.8) is in the status bar.
    assert window.tool_label.text() == f"Brush  r {window.tools.radius} px " + (
        f"({window.tools.radius * 0.7:.1f} mm)"
    )


def _unnamed_mr(folder: Path) -> Path:
    folder.mkdir()
    path = write_ct_slice(
        folder / "mr.dcm", np.full((64, 64), 100, np.int16), series_uid="9.9.1",
        study_uid="9.9", patient_id="",
    )  # fmt: skip
    ds = pydicom.dcmread(path)
    ds.Modality = "MR"
    ds.PatientName = ""
    ds.save_as(path)
    return path


def test_worklist_names_the_model_and_unnamed_patients(window, qtbot, tmp_path) -> None:
    _unnamed_mr(tmp_path / "mr")
    window.ws.import_paths([tmp_path / "mr"])
    spec = ModelSpec.from_dict(
        {
            "name": "ct-only",
            "task": "segmentation",
            "architecture": "FPN",
            "encoder": "mobilenet_v2",
            "classes": ["background", "finding"],
            "input": {"size": [64, 64]},
            "applies_to": {"modalities": ["CT"]},
        }
    )
    add_model(window.ws, spec, None)
    window.host.start()
    qtbot.waitUntil(lambda: window.host.versions.get("ct-only") == "v1", timeout=60_000)
    qtbot.waitUntil(lambda: window.device_label.text() == "CPU", timeout=60_000)  # loaded
    window.refresh_worklist()
    model = window.worklist.model
    assert COLUMNS[MODEL_COLUMN] == "Model"

    def cell(row: int, column: int) -> str:
        return model.data(model.index(row, column), Qt.ItemDataRole.DisplayRole)

    rows = {r.modality: i for i, r in enumerate(model.rows)}
    qtbot.waitUntil(lambda: cell(rows["CT"], MODEL_COLUMN) == "ct-only", timeout=30_000)
    assert cell(rows["MR"], MODEL_COLUMN) == "\u2014"  # no model reads it
    assert cell(rows["MR"], 0) == "Unnamed (mr.dcm)"
    assert cell(rows["CT"], 0) == "Test, Patient"


def test_folder_studies_show_the_folder_name() -> None:
    """Raster and NIfTI files make a study of their folder: its name, not a tail of its path."""
    from medviewer.qt.panels.worklist import _uid_label

    assert _uid_label("folder:/data/nilearn/datasets/data") == "data"
    assert _uid_label("folder:/home/dr/fundus/patient-14") == "patient-14"
    assert _uid_label("1.2.826.0.1.3680043.8.498.101") == "3680043.8.498.101"[-12:]
