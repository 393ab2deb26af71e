"""`medviewer open PATH --layout mpr --screenshot PNG` renders the three planes offscreen."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from medviewer.qt.viewer.mpr_view import PLANE_COLOURS
from tests.qt.test_launch import _run


def test_open_with_mpr_layout_writes_the_three_planes(tmp_path: Path, study: Path) -> None:
    shot, single = tmp_path / "mpr.png", tmp_path / "single.png"
    ws = str(tmp_path / "ws")
    proc = _run(
        ["open", str(study), "--workspace", ws, "--layout", "mpr", "--screenshot", str(shot)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    proc = _run(["open", "--workspace", ws, "--screenshot", str(single)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    mpr, one = cv2.imread(str(shot)), cv2.imread(str(single))
    assert mpr is not None and one is not None and mpr.shape == one.shape
    # The crosshair lines, each in its plane's colour, cross the panes: hundreds of pixels of
    # exactly those colours, which the 1-view window does not have.
    for rgb in PLANE_COLOURS.values():
        bgr = np.array(rgb[::-1], np.uint8)
        in_mpr, in_one = (int(np.all(im == bgr, axis=2).sum()) for im in (mpr, one))
        assert in_mpr > in_one + 300, rgb


def test_unknown_layout_is_refused(tmp_path: Path) -> None:
    proc = _run(["open", "--layout", "quad", "--screenshot", str(tmp_path / "x.png")], tmp_path)
    assert proc.returncode == 2 and "invalid choice: 'quad'" in proc.stderr
