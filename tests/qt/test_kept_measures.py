"""Rulers and ROIs kept with the image (drawn by real mouse, saved, shown again when the image
reopens), class areas and volumes in the class palette, and no made-up class for an image whose
only model classifies."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt

from medviewer.workspace import measurements
from tests.qt.conftest import drag


@pytest.fixture(autouse=True)
def every_mouse_move():
    before = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", 0)
    yield
    pg.setConfigOption("mouseRateLimit", before)


def _reopen(window, qtbot, image_id: int) -> None:
    window.open_image(image_id)
    qtbot.waitUntil(
        lambda: window.review.state is not None and window.review.state.image.id == image_id,
        timeout=10_000,
    )


def test_measurements_are_saved_and_shown_again(window, qtbot) -> None:
    ws = window.ws
    first, second = (r.id for r in ws.images()[:2])
    qtbot.keyClick(window, Qt.Key.Key_M)
    drag(window, [(10, 30), (25, 30), (40, 30)])
    qtbot.keyClick(window, Qt.Key.Key_O)
    drag(window, [(20, 20), (40, 40), (60, 50)])
    qtbot.waitUntil(lambda: len(measurements.latest(ws, first)[1]) == 2, timeout=10_000)
    ruler, roi = measurements.latest(ws, first)[1]
    assert ruler.kind == "ruler" and ruler.readings[0].unit == "mm"
    assert abs(ruler.readings[0].value - 24.0) < 0.8  # 30 columns at 0.8 mm
    assert roi.kind == "ellipse" and roi.readings[0].unit == "HU"
    assert len(window.measures.drawn.items) == 4  # two shapes, two readings
    _reopen(window, qtbot, second)
    qtbot.waitUntil(lambda: window.measures.image_id == second, timeout=5_000)
    assert window.measures.drawn.items == []
    _reopen(window, qtbot, first)
    qtbot.waitUntil(lambda: len(window.measures.drawn.items) == 4, timeout=10_000)
    assert [m.kind for m in window.measures.found] == ["ruler", "ellipse"]
    labels = [i.text() for i in window.measures.drawn.items if hasattr(i, "text")]
    assert labels[0] == ruler.text
    window.measures.delete_action.trigger()
    qtbot.waitUntil(lambda: measurements.latest(ws, first)[1] == [], timeout=10_000)
    assert window.measures.drawn.items == []


def test_a_click_keeps_no_ruler(window, qtbot) -> None:
    qtbot.keyClick(window, Qt.Key.Key_M)
    drag(window, [(10, 30), (10, 30)])
    window.review.flush()
    assert window.measures.found == []


def test_palette_shows_area_on_the_slice_and_volume_over_the_series(window, qtbot) -> None:
    ws = window.ws
    rows = ws.images()
    for row in rows:  # 12 pixels of class 1 on each of the 3 slices
        m = np.zeros((64, 80), np.uint8)
        m[:3, :4] = 1
        ws.revisions.save_mask(row.id, m, source="human", author="x")
    _reopen(window, qtbot, rows[1].id)
    area = 12 * 0.7 * 0.8
    ml = 36 * 0.7 * 0.8 * 1.0 / 1000
    expected = f"Class 1  {area:.0f} mm\u00b2 \u00b7 {ml:.2f} mL"
    qtbot.waitUntil(lambda: expected in window.class_palette.sizes.text(), timeout=10_000)


def test_a_classifier_only_image_has_no_classes_to_paint(window, qtbot, monkeypatch) -> None:
    qtbot.waitUntil(lambda: window.host.runner is not None, timeout=10_000)
    palette = window.class_palette
    fundus = SimpleNamespace(
        name="fundus", active=True, spec={"task": "classification", "labels": ["dr", "glaucoma"]}
    )
    # As if the demo's fundus classifier were active and applied (no weights to load here);
    # patched only for the call, so no proposal is asked of it.
    with monkeypatch.context() as m:
        m.setattr(window.ws.models, "list", lambda: [fundus])
        m.setattr(window.host, "models_for", lambda image_id: ["fundus"])
        window.measures._classes()
    assert palette.list.isHidden() and not palette.none_text.isHidden()
    assert "only classifies (dr, glaucoma" in palette.none_text.text()
    assert "Class 1" not in palette.none_text.text()
    palette.show_palette(window.review.state.palette)
    assert not palette.list.isHidden() and palette.none_text.isHidden()
