"""The brush in the three planes: its radius in mm (round in a coronal plane of 2.5 mm slices
and 0.8 mm columns), and its outline under the mouse in the pane it is over."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, Qt

from tests.qt.conftest import send_mouse
from tests.qt.test_mpr import COLUMN_MM, ROW_MM, SLICE_MM, ct_series, mpr  # noqa: F401


@pytest.fixture(autouse=True)
def every_mouse_move():
    """pyqtgraph drops mouse moves closer than 10 ms apart; each synthetic one must count."""
    before = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", 0)
    yield
    pg.setConfigOption("mouseRateLimit", before)


def _at(pane, row: float, column: float):
    return pane.view.mapFromScene(pane.box.mapViewToScene(pane.to_view(row, column)))


def test_a_dab_in_coronal_is_round_in_mm(mpr, qtbot) -> None:  # noqa: F811
    volume = mpr.volume
    mpr.tools.set_tool("brush")
    mpr.tools.radius = 5  # 5 px of a slice: 3.5 mm, as the status says
    assert "(3.5 mm)" in mpr.tools.status_text()
    volume.set_crosshair((3, 20, 20))
    pane = mpr.mpr.panes["coronal"]
    point = _at(pane, 3, 20)  # coronal rows are slices
    vp = pane.view.viewport()
    left = Qt.MouseButton.LeftButton
    send_mouse(vp, QEvent.Type.MouseButtonPress, point, left, left)
    send_mouse(vp, QEvent.Type.MouseButtonRelease, point, left, Qt.MouseButton.NoButton)
    painted = np.argwhere(volume.review.labels == 1)
    slices, columns = sorted(set(painted[:, 0])), sorted(set(painted[:, 2]))
    assert set(painted[:, 1]) == {20}  # one coronal plane
    # 3.5 mm: one slice (2.5 mm) either side, four columns (3.2 mm) either side.
    assert len(slices) == 3 and slices[-1] - slices[0] == 2 and columns == list(range(16, 25))
    height, width = len(slices) * SLICE_MM, len(columns) * COLUMN_MM
    assert abs(height - width) < SLICE_MM  # round in mm, not 11 slices (27 mm) tall
    assert min(ROW_MM, COLUMN_MM) == ROW_MM


def test_the_brush_outline_follows_the_mouse_in_its_pane(mpr, qtbot) -> None:  # noqa: F811
    mpr.tools.set_tool("brush")
    mpr.tools.radius = 5
    panes = mpr.mpr.panes
    sagittal, axial = panes["sagittal"], panes["axial"]
    send_mouse(
        sagittal.view.viewport(),
        QEvent.Type.MouseMove,
        _at(sagittal, 3, 10),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
    )
    qtbot.waitUntil(lambda: sagittal.cursor.isVisible(), timeout=2_000)
    assert not axial.cursor.isVisible()
    rect = sagittal.cursor.rect()
    assert abs(rect.width() / 2 - (3.5 + 0.5 * min(sagittal.spacing))) < 1e-6
    centre = rect.center()
    expected = sagittal.to_view(3, 10)
    assert abs(centre.x() - expected.x()) < 0.5 and abs(centre.y() - expected.y()) < 0.5
    mpr.tools.set_tool("ruler")  # not a brush: no outline
    send_mouse(
        sagittal.view.viewport(),
        QEvent.Type.MouseMove,
        _at(sagittal, 4, 10),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
    )
    qtbot.waitUntil(lambda: not sagittal.cursor.isVisible(), timeout=2_000)
