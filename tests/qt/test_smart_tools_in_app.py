"""The smart tools and measurements in the app, by real mouse and keys: each stroke or click
one undo step; fill between slices previewed, accepted as one step over the series, saved."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt

from medviewer.workspace import ImageQuery
from medviewer.workspace.review_state import load_review
from tests.qt.conftest import drag

BLOCK = (slice(0, 8), slice(0, 12))  # the fixture's bright top-left block (>= 1000 HU)


@pytest.fixture(autouse=True)
def every_mouse_move():
    """pyqtgraph drops mouse moves closer than 10 ms apart (its mouseRateLimit); synthetic
    drags come faster than a hand, so each move must count, whatever the clock says."""
    before = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", 0)
    yield
    pg.setConfigOption("mouseRateLimit", before)


def _mask(win) -> np.ndarray:
    return win.review.session.mask


def _only_block(mask: np.ndarray) -> bool:
    outside = mask.copy()
    outside[BLOCK] = 0
    return not outside.any()


def test_threshold_brush_paints_only_the_picked_range_and_undoes_at_once(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_T)
    assert window.tools.tool == "threshold"
    drag(window, [(5, 4), (10, 5), (20, 6), (30, 6)])  # the brush runs well past the block
    mask = _mask(window)
    assert mask[BLOCK].sum() > 20 and _only_block(mask)
    assert window.tools.threshold_range[0] >= 999
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not _mask(window).any()


def test_region_growing_and_level_tracing(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_G)
    drag(window, [(5, 4), (5, 4)])  # a click
    assert _mask(window)[BLOCK].all() and _only_block(_mask(window))
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not _mask(window).any()
    # The background is most of the image: a leak, refused with the reason.
    drag(window, [(40, 40), (40, 40)])
    assert not _mask(window).any() and "lower the tolerance" in window.measure_label.text()
    qtbot.keyClick(window, Qt.Key.Key_L)
    qtbot.keyClick(window, Qt.Key.Key_2)
    drag(window, [(3, 3), (3, 3)])
    assert (_mask(window)[BLOCK] == 2).all() and _only_block(_mask(window))
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not _mask(window).any()


def _open(win, qtbot, image_id: int) -> None:
    win.open_image(image_id)
    qtbot.waitUntil(lambda: win.review.state.image.id == image_id, timeout=10_000)


def _saved(win) -> None:
    win.workers.saver.submit(lambda: None).result()


def test_fill_between_slices_preview_accept_and_undo_in_one_step(window, qtbot) -> None:
    ws = window.ws
    ids = [r.id for r in ws.images(ImageQuery(series_uid=window.review.state.image.series_uid))]
    assert len(ids) == 3 and window.review.state.image.id == ids[0]
    drag(window, [(40, 30), (41, 30)])
    _open(window, qtbot, ids[2])
    drag(window, [(46, 34), (47, 34)])
    drawn = _mask(window).copy()
    qtbot.keyClick(window, Qt.Key.Key_I)
    qtbot.waitUntil(lambda: window.series_fill.pending is not None, timeout=10_000)
    assert "Return accepts" in window.measure_label.text()
    assert not load_review(ws, ids[1]).mask.any()  # a preview writes nothing
    qtbot.keyClick(window, Qt.Key.Key_Return)
    _saved(window)
    middle = load_review(ws, ids[1]).mask
    assert middle.any() and set(np.unique(middle)) == {0, 1}
    assert middle[32, 43] == 1  # between the two drawn discs
    revisions = len(ws.revisions.history(ids[1]))
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    _saved(window)
    assert not load_review(ws, ids[1]).mask.any()  # the whole fill undone at once
    assert len(ws.revisions.history(ids[1])) == revisions + 1  # ... and saved so
    assert np.array_equal(_mask(window), drawn)  # the drawn slice is untouched


def test_fill_between_with_nothing_to_fill_says_so(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_I)
    qtbot.waitUntil(lambda: "nothing to fill" in window.measure_label.text(), timeout=10_000)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.series_fill.pending is None


def test_ruler_in_mm_and_ellipse_roi_in_hu(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_M)
    drag(window, [(10, 30), (25, 30), (40, 30)])
    # 30 columns at 0.8 mm (the fixture's Pixel Spacing is 0.7 mm rows, 0.8 mm columns).
    # (Mouse positions are whole screen pixels: the ends land within a pixel of the points.)
    value, unit = window.measure_label.text().split()
    assert unit == "mm" and abs(float(value) - 24.0) < 0.8
    assert window.tools.marks.label.text() == window.measure_label.text()
    assert not _mask(window).any()  # measuring paints nothing
    qtbot.keyClick(window, Qt.Key.Key_O)
    drag(window, [(20, 20), (40, 40), (60, 50)])
    text = window.measure_label.text()
    assert text.startswith("mean 0.0 HU") and "SD 0.0" in text and "mm\u00b2" in text
