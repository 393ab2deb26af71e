"""Three linked planes of a CT series in the app: shapes and aspect, the crosshair, one window,
a brush stroke as one undo step across slices, and the save of the changed slices."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from medviewer.imaging.display import Window
from medviewer.workspace import Workspace
from tests.imaging.helpers import write_ct_slice
from tests.qt.conftest import send_mouse

SLICES, ROWS, COLUMNS = 8, 40, 48
SLICE_MM, ROW_MM, COLUMN_MM = 2.5, 0.7, 0.8


@pytest.fixture
def ct_series(tmp_path: Path) -> Path:
    """An axial CT series: slice k holds k * 10 HU, with a bright block marking the patient's
    right-anterior corner (row 0..5, column 0..5) on each slice."""
    folder = tmp_path / "ct"
    folder.mkdir()
    for k in range(SLICES):
        px = np.full((ROWS, COLUMNS), 1024 + 10 * k, np.int16)
        px[:6, :6] = 3000
        write_ct_slice(
            folder / f"slice{(k * 5) % SLICES}.dcm",  # shuffled names: the stack sorts
            px,
            series_uid="1.2.3.9",
            position=(0.0, 0.0, SLICE_MM * k),
            instance_number=k + 1,
            spacing=(ROW_MM, COLUMN_MM),
        )
    return folder


@pytest.fixture
def mpr(qtbot, tmp_path: Path, ct_series: Path) -> Iterator:
    from medviewer.qt.main_window import MainWindow

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings.setValue("quiet_errors", True)
    ws = Workspace.open(tmp_path / "ws", app_lock=True)
    ws.import_paths([ct_series])
    win = MainWindow(ws, "dr.test", settings, device="cpu")
    qtbot.addWidget(win)
    win.resize(1800, 800)
    win.show()
    ids = [r.id for r in ws.images()]
    middle = _image_at(ws, 3)
    win.open_image(middle)
    qtbot.waitUntil(lambda: win.review.state is not None, timeout=10_000)
    win.set_layout("mpr")
    qtbot.waitUntil(lambda: win.volume.review is not None, timeout=10_000)
    assert len(ids) == SLICES
    yield win
    win.close()
    ws.close()


def _image_at(ws: Workspace, k: int) -> int:
    """The image of slice k (z = k * SLICE_MM)."""
    for r in ws.images():
        if abs(ws.frame_ref(r.id).instance.position[2] - SLICE_MM * k) < 1e-6:
            return r.id
    raise AssertionError(f"no slice {k}")


def test_three_planes_of_the_right_shape_and_aspect(mpr) -> None:
    panes = mpr.mpr.panes
    assert mpr.layouts.name == "mpr" and all(p.isVisible() for p in panes.values())
    assert not mpr.view.isVisible()
    assert panes["axial"].pixels.shape == (ROWS, COLUMNS)
    assert panes["coronal"].pixels.shape == (SLICES, COLUMNS)
    assert panes["sagittal"].pixels.shape == (SLICES, ROWS)
    assert panes["axial"].spacing == pytest.approx((ROW_MM, COLUMN_MM))
    assert panes["coronal"].spacing == pytest.approx((SLICE_MM, COLUMN_MM))
    assert panes["sagittal"].spacing == pytest.approx((SLICE_MM, ROW_MM))
    # Drawn in mm: a coronal pixel is 2.5 mm high and 0.8 mm wide on screen.
    rect = panes["coronal"].image_item.mapRectToParent(panes["coronal"].image_item.boundingRect())
    assert rect.height() == pytest.approx(SLICES * SLICE_MM)
    assert rect.width() == pytest.approx(COLUMNS * COLUMN_MM)
    # The crosshair starts on the slice that was open; axial shows that slice.
    assert mpr.volume.crosshair[0] == 3
    assert panes["axial"].title.text().startswith("Axial  4/8")
    # Head up in coronal: the top row is the last (most superior) slice, brighter.
    coronal = panes["coronal"].pixels.astype(int)
    assert coronal[0, 20] > coronal[-1, 20]


def test_click_in_axial_moves_coronal_and_sagittal(mpr, qtbot) -> None:
    pane = mpr.mpr.panes["axial"]
    vp = pane.view.viewport()
    target = pane.view.mapFromScene(pane.box.mapViewToScene(pane.to_view(30, 12)))
    mpr.tools.set_tool("polygon")  # a tool that does not paint in planes: clicks navigate
    shift = Qt.KeyboardModifier.ShiftModifier
    for kind, button, buttons in (
        (QEvent.Type.MouseButtonPress, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton),
        (QEvent.Type.MouseButtonRelease, Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton),
    ):
        QApplication.sendEvent(
            vp,
            _mouse(kind, QPointF(target), vp.mapToGlobal(target), button, buttons, shift),
        )
    qtbot.waitUntil(lambda: mpr.volume.crosshair == (3, 30, 12), timeout=2000)
    reslicer = mpr.volume.review.reslicer
    assert reslicer.point_in("coronal", mpr.volume.crosshair)[1] == 12
    cor = mpr.volume.review.reslicer.plane(mpr.volume.review.stored, "coronal", (3, 30, 12))
    sag = mpr.volume.review.reslicer.plane(mpr.volume.review.stored, "sagittal", (3, 30, 12))
    assert cor.index == 30 and sag.index == 12
    assert "Coronal  31/40" in mpr.mpr.panes["coronal"].title.text()
    assert "Sagittal  13/48" in mpr.mpr.panes["sagittal"].title.text()
    # Wheel in sagittal: the next sagittal plane, the others stay.
    mpr.mpr.panes["sagittal"].box.sig_scroll.emit(1)
    assert mpr.volume.crosshair == (3, 30, 13)


def test_one_window_for_the_three_planes(mpr) -> None:
    before = {n: p.pixels.copy() for n, p in mpr.mpr.panes.items()}
    mpr.mpr.panes["coronal"].box.sig_window_drag.emit(0.0, 40.0)  # right-drag in coronal
    assert mpr.volume.window.name == "manual"
    for name, pane in mpr.mpr.panes.items():
        assert not np.array_equal(pane.pixels, before[name]), name
    mpr.volume.set_window(Window(-1000, 2, "narrow"))  # everything above -1000 HU white
    assert all(np.all(p.pixels == 255) for p in mpr.mpr.panes.values())


def test_coronal_stroke_is_one_undo_step_and_saves_the_changed_slices(mpr, qtbot) -> None:
    volume = mpr.volume
    labels = volume.review.labels
    mpr.tools.set_tool("brush")
    mpr.tools.set_class(2)
    mpr.tools.radius = 1
    # A vertical line in coronal (through row 20): column 10, from the top to the bottom.
    volume.set_crosshair((3, 20, 10))
    pane = mpr.mpr.panes["coronal"]
    points = [pane.to_view(r, 10) for r in (0.0, 3.5, 7.0)]
    vp = pane.view.viewport()
    pts = [pane.view.mapFromScene(pane.box.mapViewToScene(p)) for p in points]
    send_mouse(
        vp,
        QEvent.Type.MouseButtonPress,
        pts[0],
        Qt.MouseButton.LeftButton,
        Qt.MouseButton.LeftButton,
    )
    for p in pts[1:]:
        send_mouse(vp, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton)
    send_mouse(
        vp,
        QEvent.Type.MouseButtonRelease,
        pts[-1],
        Qt.MouseButton.LeftButton,
        Qt.MouseButton.NoButton,
    )
    painted = np.argwhere(labels == 2)
    assert sorted(set(painted[:, 0])) == list(range(SLICES))  # every slice, one stroke
    assert set(painted[:, 1]) == {20} and 10 in painted[:, 2] and set(painted[:, 2]) <= {9, 10, 11}
    count = len(painted)
    assert volume.history.undo_steps == 1
    # The axial pane of slice 3 shows the voxel in the class colour.
    assert mpr.mpr.panes["axial"].mask_item.mask[20, 10] == 2
    # Ctrl+Z in a pane undoes the whole stroke at once.
    view = pane.view
    view.setFocus()
    press = QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    QApplication.sendEvent(view, press)
    assert not labels.any()
    volume.redo()
    assert (labels == 2).sum() == count
    # Saved: one human revision per changed slice, in one go.
    volume.save_now()
    qtbot.waitUntil(lambda: volume.last_saved is not None, timeout=10_000)
    ws = mpr.ws
    for k, state in enumerate(volume.review.states):
        rev = ws.revisions.latest(state.image.id, "mask")
        assert rev is not None and rev.source == "human" and rev.author == "dr.test"
        mask = ws.revisions.read_mask(rev)
        assert mask[20, 10] == 2 and np.array_equal(mask, labels[k]), k
    times = {ws.revisions.latest(s.image.id, "mask").created_at for s in volume.review.states}
    assert len(times) == 1  # one transaction: one time stamp
    assert not volume.unsaved
    # An undo after the save is a change again; back to 1 view, it is saved and shown.
    volume.undo()
    assert volume.unsaved
    mpr.set_layout("single")
    qtbot.waitUntil(
        lambda: mpr.review.state is not None and not mpr.review.state.mask.any(), timeout=10_000
    )
    assert mpr.view.isVisible()
    for row in ws.images():
        assert not ws.revisions.read_mask(ws.revisions.latest(row.id, "mask")).any()


def test_2x2_and_a_volume_that_cannot_open(window, qtbot) -> None:
    """The shared fixture's three CT slices make a volume; a failure falls back to 1 view."""
    window.set_layout("2x2")
    qtbot.waitUntil(lambda: window.volume.review is not None, timeout=10_000)
    assert window.layouts.name == "2x2" and window.layouts.info.isVisible()
    assert window.volume.review.stored.shape == (3, 64, 80)
    window.volume.sig_failed.emit("image 9 is a single slice, not part of a volume")
    assert window.layouts.name == "single"
    assert "single slice" in window.statusBar().currentMessage()


def _mouse(kind, pos, global_pos, button, buttons, modifiers):
    from PySide6.QtGui import QMouseEvent

    return QMouseEvent(kind, pos, QPointF(global_pos), button, buttons, modifiers)
