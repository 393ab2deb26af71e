"""Shared fixtures: real files shipped by pydicom / pydicom-data, and small generated studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from tests.imaging.helpers import write_ct_slice
from tests.workspace.pg_server import postgres_server, postgres_url  # noqa: F401 (fixtures)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `gpu` skip, saying why, where torch sees no CUDA GPU."""
    marked = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not marked:
        return
    import torch  # only when some test needs to know

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False here")
    for item in marked:
        item.add_marker(skip)


def sample_file(name: str) -> Path:
    """A pydicom (or pydicom-data) test file; skip the test when it is not installed."""
    path = get_testdata_file(name, download=False)
    if not path:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return Path(path)


@pytest.fixture
def pydicom_test_files() -> Path:
    return Path(get_testdata_file("CT_small.dcm")).parent


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    """Three 32x24 CT slices of one series, one patient."""
    folder = tmp_path / "study"
    folder.mkdir()
    for k in range(3):
        px = np.full((32, 24), 100 * k, np.int16)
        write_ct_slice(folder / f"s{k}.dcm", px, series_uid="1.2.3.1", position=(0, 0, float(k)))
    return folder
