"""What the clinician sees: a known image with a known mask and heatmap, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor

from medviewer.imaging.palette import class_colour
from medviewer.qt.viewer.overlay import heatmap_rgba
from tests.qt.conftest import view_point


def _colour(window, x: float, y: float) -> np.ndarray:
    grab = window.view.grab().toImage()
    c = QColor(grab.pixel(view_point(window, x, y)))
    return np.array([c.red(), c.green(), c.blue()], float)


def test_image_mask_and_heatmap_pixels(window, qtbot) -> None:
    state = window.review.state
    mask = state.mask
    mask[40:50, 20:30] = 1  # class 1 in the palette's colour
    window.review.edited((40, 20, 50, 30))
    window.opacity.setValue(50)
    cam = np.zeros((64, 80), np.float32)
    cam[40:50, 55:65] = 1.0  # a hot spot away from the mask
    window.view.set_heatmap(cam)
    qtbot.wait(50)
    grey = _colour(window, 70, 20)  # plain image (0 HU in the header window)
    assert np.ptp(grey) < 3  # grey stays grey: no colour cast
    class_rgb = np.array(class_colour(1), float)  # no model named the class: default colour
    expected_mask = 0.5 * class_rgb + 0.5 * grey
    assert np.abs(_colour(window, 25, 45) - expected_mask).max() <= 8
    heat = heatmap_rgba(cam)[45, 60].astype(float)
    alpha = heat[3] / 255
    expected_heat = alpha * heat[:3] + (1 - alpha) * grey
    assert np.abs(_colour(window, 60, 45) - expected_heat).max() <= 8
    # The bright block stays top-left with overlays on: no flip or transpose anywhere.
    assert _colour(window, 3, 3).mean() > 200 and _colour(window, 76, 60).mean() < 150
    window.view.grab().save(str(window.ws.root / "screenshot.png"))
