"""The command line: clear reports, exit codes, never a traceback for bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.processes import python_module
from tests.conftest import sample_file


def test_info_lists_series_and_unreadable(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["info", str(sample_file("CT_small.dcm")), str(sample_file("MR_truncated.dcm"))])
    out = capsys.readouterr().out
    assert code == 0
    assert "Series 1 CT" in out and "128x128" in out
    assert "MR_truncated.dcm: pixel data truncated: 8130 of 8192 bytes" in out


def test_an_unreadable_setting_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    setting = "MEDVIEWER_MAX_FRAMES"
    monkeypatch.setenv(setting, "lots")
    assert main(["info", str(sample_file("CT_small.dcm"))]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {setting} must be a whole number above 0, not 'lots'"


def test_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["info", "--json", str(sample_file("rtdose.dcm"))])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    image = data["patients"][0]["studies"][0]["series"][0]["images"][0]
    assert image["frames"] == 15 and image["transfer_syntax"] == "Implicit VR Little Endian"


def test_info_exit_2_when_nothing_readable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01garbage" * 10)
    assert main(["info", str(tmp_path)]) == 2
    assert "junk.bin: not a DICOM or image file" in capsys.readouterr().out


def test_info_verify_reports_corrupt_stream(capsys: pytest.CaptureFixture[str]) -> None:
    path = sample_file("JPEG2000-embedded-sequence-delimiter.dcm")
    assert main(["info", "--verify", str(path)]) == 2
    assert "could not be decoded" in capsys.readouterr().out


def test_render_writes_png_with_window(tmp_path: Path) -> None:
    out = tmp_path / "ct.png"
    assert (
        main(
            ["render", str(sample_file("CT_small.dcm")), "--out", str(out), "--window", "40", "400"]
        )
        == 0
    )
    png = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert png.shape == (128, 128) and png.dtype == np.uint8 and png.std() > 10


def test_render_bad_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_text("hello")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medviewer.cli",
            "render",
            str(bad),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: not a DICOM or image file"
    assert "Traceback" not in proc.stderr


def test_render_corrupt_stream_is_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = sample_file("JPEG-lossy.dcm")
    assert main(["render", str(path), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: JPEG Extended") and "Traceback" not in err


def test_render_frame_out_of_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert (
        main(
            [
                "render",
                str(sample_file("rtdose.dcm")),
                "--frame",
                "99",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert "frame 99 asked for, the file has 15" in capsys.readouterr().err


def test_demo_builds_headless(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--workspace", str(tmp_path / "ws"), "--no-gui", "--small"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    # Two proposals per generated task, two more for the brain slices when nilearn is installed.
    brain = importlib.util.find_spec("nilearn") is not None
    real = sum(  # skimage's fundus photograph and pydicom-data's chest radiograph, too
        importlib.util.find_spec(m) is not None for m in ("skimage", "data_store")
    )
    assert f"{(8 if brain else 6) + real} AI proposals" in out
    assert "model fundus-findings v1" in out
    assert (tmp_path / "ws" / "demo.json").is_file()


def test_a_frozen_app_runs_python_modules_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PyInstaller build has no `python -m`: training jobs run as `medviewer --run-module`."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # run_module sets the module's argv
    command = python_module("medviewer.training")
    assert command == [sys.executable, "--run-module", "medviewer.training"]
    with pytest.raises(SystemExit) as ended:
        main([*command[1:], str(tmp_path / "missing.json")])
    assert ended.value.code == 1  # the training module ran: its own error event and exit code
    assert '"event": "error"' in capsys.readouterr().out


def test_unexpected_error_is_one_line_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17: one top-level handler, so no command shows a traceback unless asked to."""

    def broken(args: object) -> int:
        raise RuntimeError("something nobody expected")

    from medviewer.cli import imaging

    monkeypatch.setattr(imaging, "cmd_info", broken)
    monkeypatch.delenv("MEDVIEWER_DEBUG", raising=False)
    assert main(["info", "."]) == 1
    assert capsys.readouterr().err == (
        "error: RuntimeError: something nobody expected (set MEDVIEWER_DEBUG=1 for the traceback)\n"
    )
    monkeypatch.setenv("MEDVIEWER_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something nobody expected"):
        main(["info", "."])


def test_interrupt_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    from medviewer.cli import imaging

    monkeypatch.setattr(imaging, "cmd_info", interrupted)
    monkeypatch.delenv("MEDVIEWER_DEBUG", raising=False)
    assert main(["info", "."]) == 130
    assert capsys.readouterr().err == "\ninterrupted\n"


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    """`medviewer info ... | head`: BrokenPipeError traceback before (issue 17)."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        proc = subprocess.run(
            [*python_module("medviewer.cli"), "info", str(sample_file("CT_small.dcm"))],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")
