from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medviewer.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path, series_dir: Path) -> Iterator[Workspace]:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([series_dir])
        yield ws
