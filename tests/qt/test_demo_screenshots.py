"""`medviewer demo` without a display: it says so and writes the README's four screenshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

from medviewer.cli import main
from medviewer.workspace import Workspace


def _pixels(path: Path) -> np.ndarray:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def test_demo_without_display_writes_the_four_screenshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ws_dir, shots = tmp_path / "ws", tmp_path / "shots"
    argv = ["demo", "--workspace", str(ws_dir), "--small", "--screenshot", str(shots)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no display: writing screenshots" in out and "AI proposals" in out
    names = ["worklist.png", "chest-mask.png", "fundus-gradcam.png", "retrain.png"]
    assert sorted(p.name for p in shots.iterdir()) == sorted(names)
    main_window = _pixels(shots / "chest-mask.png")
    assert main_window.shape == (900, 1400, 3)
    # Not blank: an image, panels and text.
    assert all(len(np.unique(_pixels(shots / n).reshape(-1, 3), axis=0)) > 50 for n in names)
    # The fundus shot has the heatmap on: far more saturated colour than the chest shot.
    fundus = _pixels(shots / "fundus-gradcam.png").astype(int)
    chest = main_window.astype(int)

    def saturated(rgb: np.ndarray) -> int:
        return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 100).sum())

    assert saturated(fundus) > 5 * saturated(chest) + 10_000
    # The retraining ran on a copy: the demo workspace got no new version.
    with Workspace.open(ws_dir, readonly=True) as ws:
        assert all(m.version == "v1" for m in ws.models.list())
