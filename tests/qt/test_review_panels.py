"""Labels, proposals, save failures and rendering of the view."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from medviewer.workspace import blobs as blobs_module
from tests.qt.conftest import drag, view_point


def _with_ai(window, qtbot) -> int:
    """Give the open image an AI mask and labels, as the runner would, and reload it."""
    ws = window.ws
    image = window.review.state.image.id
    proposal = np.zeros((64, 80), np.uint8)
    proposal[30:40, 50:70] = 1
    gate = {"finding": False, "probability": 0.04, "rule": "classifier"}
    summary = {
        "finding": False, "probability": 0.04, "uncertainty": 0.3,
        "gate": {**gate, "detail": "no finding: classifier 0.04"},
        "probabilities": {"pneumothorax": 0.04, "effusion": 0.61},
    }  # fmt: skip
    ws.revisions.save_mask(
        image, proposal, source="ai", author="m", model=("m", "1"), summary=summary
    )
    labels = {"pneumothorax": False, "effusion": True}
    ws.revisions.save_labels(
        image, labels, source="ai", author="m", model=("m", "1"), summary=summary
    )
    window.open_image(image)
    qtbot.waitUntil(lambda: window.review.state.proposal is not None, timeout=10_000)
    return image


def test_labels_panel_shows_probabilities_and_gate(window, qtbot) -> None:
    image = _with_ai(window, qtbot)
    assert window.labels.gate_text.text() == "no finding: classifier 0.04"
    box = window.labels.box("effusion")
    assert box.isChecked() and "AI 0.61" in box.text()
    window.labels.box("pneumothorax").setChecked(True)  # ticking saves a human labels revision
    qtbot.waitUntil(
        lambda: window.ws.revisions.confirmed(image, "labels") is not None, timeout=5_000
    )
    final = window.ws.revisions.confirmed(image, "labels").revision
    assert final.labels == {"pneumothorax": True, "effusion": True} and final.author == "dr.test"


def test_proposal_is_the_starting_mask_and_stays_for_comparison(window, qtbot) -> None:
    image = _with_ai(window, qtbot)
    assert window.review.session.mask[35, 60] == 1
    qtbot.keyClick(window, Qt.Key.Key_E)
    drag(window, [(50, 35), (70, 35)])
    window.compare_action.setChecked(True)
    assert window.view.proposal_item.isVisible()
    assert window.view.proposal_item.mask[35, 60] == 1  # the AI's proposal is untouched
    window.review.save_now()
    qtbot.waitUntil(lambda: window.ws.revisions.confirmed(image) is not None, timeout=5_000)
    assert window.ws.revisions.original(image).source == "ai"  # both stay
    assert (
        window.ws.revisions.confirmed(image).revision.parent_id
        == window.ws.revisions.original(image).id
    )


def test_save_failure_keeps_the_edit_and_retries(window, qtbot, monkeypatch) -> None:
    import errno
    import os

    image = window.review.state.image.id

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(blobs_module.os, "fsync", full)
    drag(window, [(10, 10), (40, 10)])
    painted = window.review.session.mask.copy()
    window.review.save_now()
    qtbot.waitUntil(lambda: window.review.save_error is not None, timeout=5_000)
    assert "disk full" in window.review.save_error
    assert "NOT SAVED" in window.save_label.text()
    assert window.review.session.dirty and np.array_equal(window.review.session.mask, painted)
    monkeypatch.undo()
    window.review.save_now()  # the retry (also scheduled by a timer)
    qtbot.waitUntil(lambda: window.review.save_error is None, timeout=5_000)
    assert np.array_equal(
        window.ws.revisions.read_mask(window.ws.revisions.confirmed(image).revision), painted
    )


def test_view_is_not_flipped_or_transposed(window) -> None:
    """The bright block is the image's top-left 12x8 pixels: it must appear top-left on screen."""
    grab = window.view.grab().toImage()

    def grey(x: int, y: int) -> int:
        return grab.pixelColor(view_point(window, x, y)).value()

    assert grey(3, 3) > 200 and grey(75, 3) < 150 and grey(3, 60) < 150


def test_window_level_right_drag_and_presets(window) -> None:
    before = window.view.window
    drag(window, [(40, 30), (60, 50)], button=Qt.MouseButton.RightButton)
    after = window.view.window
    assert after.width > before.width and after.center != before.center
    window.view.set_window(window.view.window.__class__(40, 400, "abdomen"))
    assert window.view.window.width == 400


def test_approving_an_unedited_proposal_shows_it_confirmed(window, qtbot) -> None:
    image = _with_ai(window, qtbot)
    assert window.truth_label.text() == "mask not confirmed"
    qtbot.keyClick(window, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: window.ws.image(image).status == "approved", timeout=5_000)
    qtbot.waitUntil(
        lambda: window.truth_label.text() == "AI proposal confirmed by dr.test", timeout=5_000
    )
    assert window.ws.revisions.confirmed(image).revision.source == "ai"
