"""The window as a clinician uses it: paint, undo, redo, navigate, save, label, approve."""

from __future__ import annotations

import time

import numpy as np
from PySide6.QtCore import Qt

from medviewer.qt import review as review_module
from tests.qt.conftest import drag


def _mask(win) -> np.ndarray:
    return win.review.session.mask


def test_paint_undo_redo(window, qtbot) -> None:
    drag(window, [(10, 30), (20, 30), (40, 30), (60, 30)])
    painted = _mask(window).copy()
    assert painted[30, 10:60].all() and painted[5, 5] == 0
    assert painted.sum() > 0 and window.review.session.dirty
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _mask(window).sum() == 0  # the whole drag was one undo step
    qtbot.keyClick(
        window,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert np.array_equal(_mask(window), painted)


def test_edit_is_saved_on_navigation_and_back(window, qtbot) -> None:
    first = window.review.state.image.id
    drag(window, [(10, 40), (50, 40)])
    painted = _mask(window).copy()
    qtbot.keyClick(window, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: window.review.state.image.id != first, timeout=10_000)
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.review.state.image.id == first, timeout=10_000)
    assert np.array_equal(_mask(window), painted)
    final = window.ws.revisions.confirmed(first).revision
    assert final is not None and final.author == "dr.test"
    assert np.array_equal(window.ws.revisions.read_mask(final), painted)


def test_back_to_an_image_whose_save_is_slow_shows_the_edit(window, qtbot, monkeypatch) -> None:
    """A slow disk or server: the save of the image left is still running when the clinician
    comes back; the image is read after it, so the edit is on screen, not the mask before."""
    real = review_module.save_mask_edit

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(review_module, "save_mask_edit", slow)
    first = window.review.state.image.id
    drag(window, [(10, 40), (50, 40)])
    painted = _mask(window).copy()
    before = window.review.session
    qtbot.keyClick(window, Qt.Key.Key_N)
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)  # at once, back
    qtbot.waitUntil(lambda: window.review.session is not before, timeout=10_000)  # read again
    assert window.review.state.image.id == first
    assert np.array_equal(_mask(window), painted)
    window.review.flush()


def test_autosave_after_a_pause(window, qtbot) -> None:
    image = window.review.state.image.id
    drag(window, [(5, 50), (30, 50)])
    qtbot.waitUntil(lambda: window.ws.revisions.confirmed(image) is not None, timeout=5_000)
    qtbot.waitUntil(lambda: not window.review.session.dirty, timeout=5_000)
    assert "saved" in window.save_label.text()


def test_ctrl_s_saves_at_once(window, qtbot) -> None:
    image = window.review.state.image.id
    drag(window, [(5, 50), (30, 50)])
    qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.ws.revisions.confirmed(image) is not None, timeout=2_000)


def test_approve_and_reject_keys(window, qtbot) -> None:
    image = window.review.state.image.id
    qtbot.keyClick(window, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: window.ws.image(image).status == "approved", timeout=5_000)
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: window.ws.image(image).status == "rejected", timeout=5_000)

    def row_status() -> str:
        return next(r for r in window.worklist.model.rows if r.id == image).status

    qtbot.waitUntil(lambda: row_status() == "rejected", timeout=5_000)  # the worklist follows


def test_tool_and_class_shortcuts(window, qtbot) -> None:
    for key, tool in (
        (Qt.Key.Key_E, "eraser"),
        (Qt.Key.Key_P, "polygon"),
        (Qt.Key.Key_F, "fill"),
        (Qt.Key.Key_B, "brush"),
    ):
        qtbot.keyClick(window, key)
        assert window.tools.tool == tool
    qtbot.keyClick(window, Qt.Key.Key_3)
    assert window.tools.value == 3
    r = window.tools.radius
    qtbot.keyClick(window, Qt.Key.Key_BracketRight)
    assert window.tools.radius > r
    qtbot.keyClick(window, Qt.Key.Key_BracketLeft)
    assert window.tools.radius == r
    drag(window, [(40, 20), (41, 20)])
    assert _mask(window)[20, 40] == 3


def test_eraser_polygon_and_fill(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_P)
    for x, y in ((20, 20), (60, 20), (60, 50), (20, 50)):
        drag(window, [(x, y)])
    qtbot.keyClick(window, Qt.Key.Key_Return)
    assert _mask(window)[35, 40] == 1 and _mask(window)[10, 10] == 0
    qtbot.keyClick(window, Qt.Key.Key_E)
    drag(window, [(30, 35), (50, 35)])
    assert _mask(window)[35, 40] == 0 and _mask(window)[25, 40] == 1
    qtbot.keyClick(window, Qt.Key.Key_F)
    qtbot.keyClick(window, Qt.Key.Key_2)
    drag(window, [(3, 3)])  # the bright top-left block is one intensity region
    assert (_mask(window)[:8, :12] == 2).all() and _mask(window)[20, 20] != 2


def test_space_toggles_overlays(window, qtbot) -> None:
    assert window.view.mask_item.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not window.view.mask_item.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.view.mask_item.isVisible()


def test_worklist_click_opens_image(window, qtbot) -> None:
    target = window.worklist.model.rows[2].id
    index = window.worklist.model.index(2, 0)
    rect = window.worklist.table.visualRect(index)
    qtbot.mouseClick(window.worklist.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.review.state.image.id == target, timeout=10_000)


def test_wheel_scrolls_slices_of_the_series(window, qtbot) -> None:
    window.worklist.order.setCurrentText("Most uncertain first")  # worklist order is irrelevant
    first = window.review.state.image.id
    window.view.box.sig_scroll.emit(1)
    qtbot.waitUntil(lambda: window.review.state.image.position == 1, timeout=10_000)
    window.view.box.sig_scroll.emit(-1)
    qtbot.waitUntil(lambda: window.review.state.image.id == first, timeout=10_000)


def test_remove_islands_clear_and_accept(window, qtbot) -> None:
    drag(window, [(10, 30), (50, 30)])
    _mask(window)[60, 70] = 1  # a stray pixel
    window.tools.remove_islands(20)
    assert _mask(window)[60, 70] == 0 and _mask(window)[30, 30] == 1
    window.tools.clear()
    assert not _mask(window).any()
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _mask(window)[30, 30] == 1


def test_a_smaller_image_after_a_larger_one_fills_the_view(window, qtbot, tmp_path) -> None:
    """The overlays still sized for the previous image must not keep its zoom: a 64x80 slice
    after a 400x500 photograph was drawn as a speck in a corner."""
    import cv2

    big = tmp_path / "big" / "photo.png"
    big.parent.mkdir()
    cv2.imwrite(str(big), np.full((400, 500), 128, np.uint8))
    window.ws.import_paths([big.parent])
    large = next(r.id for r in window.ws.images() if r.path.endswith("photo.png"))
    small = next(r.id for r in window.ws.images() if not r.path.endswith("photo.png"))
    for image_id, side in ((large, 500), (small, 80)):
        window.open_image(image_id)
        qtbot.waitUntil(lambda i=image_id: window.review.state.image.id == i, timeout=10_000)
        qtbot.wait(50)
        (x0, x1), (y0, y1) = window.view.box.viewRange()
        assert min(x1 - x0, y1 - y0) <= side * 1.01 < 2 * max(x1 - x0, y1 - y0)
