"""`medviewer open PATH --layout mpr --screenshot PNG` renders the three planes offscreen."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medviewer.qt.viewer.mpr_view import PLANE_COLOURS
from tests.qt.test_launch import _run


def test_open_with_mpr_layout_writes_the_three_planes(tmp_path: Path, study: Path) -> None:
    shot = tmp_path / "mpr.png"
    ws = str(tmp_path / "ws")
    proc = _run(
        ["open", str(study), "--workspace", ws, "--layout", "mpr", "--screenshot", str(shot)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 500
    # The crosshair lines, each in its plane's colour, cross the other panes from edge to edge:
    # hundreds of pixels of exactly those colours (the 1-view window has a few dozen at most).
    for rgb in PLANE_COLOURS.values():
        bgr = np.array(rgb[::-1], np.uint8)
        assert int(np.all(image == bgr, axis=2).sum()) > 300, rgb


def test_unknown_layout_is_refused(tmp_path: Path) -> None:
    proc = _run(["open", "--layout", "quad", "--screenshot", str(tmp_path / "x.png")], tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'quad'" in proc.stderr
