from __future__ import annotations

from pathlib import Path

import pytest

from medviewer.config import Settings, cache_bytes, default_workspace


def test_workspace_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDVIEWER_WORKSPACE", str(tmp_path))
    assert default_workspace() == tmp_path


def test_workspace_default_is_user_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDVIEWER_WORKSPACE", raising=False)
    assert default_workspace().name == "workspace" and "medviewer" in str(default_workspace())


def test_cache_size_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVIEWER_CACHE_MB", "64")
    assert cache_bytes() == 64 << 20
    assert Settings.from_env().cache_bytes == 64 << 20
    monkeypatch.setenv("MEDVIEWER_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="MEDVIEWER_CACHE_MB must be a whole number"):
        cache_bytes()
