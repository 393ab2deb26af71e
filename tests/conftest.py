"""Shared fixtures: real files shipped by pydicom / pydicom-data, and small generated studies."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file


def sample_file(name: str) -> Path:
    """A pydicom (or pydicom-data) test file; skip the test when it is not installed."""
    path = get_testdata_file(name, download=False)
    if not path:
        pytest.skip(f"{name} not installed (pip install pydicom-data)")
    return Path(path)


@pytest.fixture
def pydicom_test_files() -> Path:
    return Path(get_testdata_file("CT_small.dcm")).parent
