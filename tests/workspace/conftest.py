from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medviewer.workspace import Workspace
from tests.workspace.pg_server import BACKENDS, new_workspace_on


@pytest.fixture(autouse=True)
def user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace opened by URL keeps its local folder under the user data: here, tmp."""
    monkeypatch.setenv("MEDVIEWER_WORKSPACE", str(tmp_path / "user" / "workspace"))
    return tmp_path / "user"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each store a workspace test runs on; PostgreSQL skips where the server is missing."""
    return request.param


@pytest.fixture
def new_workspace(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Workspace]:
    """An empty workspace in tmp_path/ws on the store under test."""
    with new_workspace_on(backend, tmp_path / "ws", request) as ws:
        yield ws


@pytest.fixture
def ws(new_workspace: Workspace, series_dir: Path) -> Workspace:
    new_workspace.import_paths([series_dir])
    return new_workspace


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked sqlite_only runs on SQLite alone (it reads the database file itself)."""
    kept = [
        item
        for item in items
        if not (
            item.get_closest_marker("sqlite_only")
            and getattr(item, "callspec", None)
            and item.callspec.params.get("backend") == "postgresql"
        )
    ]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
