"""Launching: `medviewer open`, --screenshot, reopening at the last image after a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from medviewer.workspace import Workspace


def _env(home: Path) -> dict[str, str]:
    # A private settings folder: the test must not read or write the user's QSettings.
    return {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(home),
        "HOME": str(home),
    }


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = _env(home)
    return subprocess.run(
        [sys.executable, "-m", "medviewer.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_open_imports_and_screenshots(tmp_path: Path, study: Path) -> None:
    shot = tmp_path / "window.png"
    proc = _run(
        ["open", str(study), "--workspace", str(tmp_path / "ws"), "--screenshot", str(shot)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] > 300 and image.shape[1] > 500
    with Workspace.open(tmp_path / "ws") as ws:
        assert len(ws.images()) == 3


def test_crash_reopens_at_the_same_image_with_autosaved_work(tmp_path: Path, study: Path) -> None:
    ws_dir = tmp_path / "ws"
    # Session 1 (killed after this): the clinician was on image 2; its edit had been autosaved.
    with Workspace.open(ws_dir) as ws:
        ws.import_paths([study])
        image = ws.images()[1].id
        mask = np.zeros((64, 80), np.uint8)
        mask[10:20, 10:20] = 1
        ws.revisions.save_mask(image, mask, source="human", author="dr")
    code = (
        "from medviewer.qt.app import settings; s = settings();"
        f" s.setValue('last_workspace', {str(ws_dir)!r});"
        f" s.setValue('last_image', {image}); s.sync()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(tmp_path), timeout=120)
    # Session 2: plain `medviewer` opens the last workspace at the last image.
    probe = tmp_path / "probe.png"
    proc = _run(["--screenshot", str(probe)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"opened image {image}" in proc.stdout


def test_no_display_without_screenshot_says_so(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    proc = subprocess.run(
        [sys.executable, "-m", "medviewer.cli", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2 and "no display" in proc.stderr
