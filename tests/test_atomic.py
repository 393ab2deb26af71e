"""The one atomic write: readers see the old file or the new one, never half, never a temp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medviewer.atomic import atomic_write, atomic_write_json, atomic_write_text


def test_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    atomic_write_json(path, {"v": 1})
    atomic_write_text(path, '{"v": 2}')
    assert path.read_text() == '{"v": 2}' and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def half_then_full_disk(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, half_then_full_disk)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_fsync_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write_text(tmp_path / "b.txt", "new")
    assert list(tmp_path.iterdir()) == []
