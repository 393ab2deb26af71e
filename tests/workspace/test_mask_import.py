"""Masks matched to images by file name: exactly, never as a pattern (issue 17, item 9)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from medviewer.workspace import Workspace
from medviewer.workspace.mask_import import import_masks
from tests.imaging.helpers import write_ct_slice


@pytest.fixture
def named(tmp_path: Path) -> Iterator[Workspace]:
    folder = tmp_path / "study"
    folder.mkdir()
    for k, name in enumerate(("plain.dcm", "plainer.dcm", "1.2.840.5", "Case_A.dcm")):
        px = np.full((32, 24), 10 * k, np.int16)
        write_ct_slice(folder / name, px, series_uid="1.2.3.1", position=(0, 0, float(k)))
    ws = Workspace.open(tmp_path / "ws")
    ws.import_paths([folder])
    yield ws
    ws.close()


def _import(ws: Workspace, folder: Path, *names: str) -> dict[str, tuple[str | None, str]]:
    """mask file name -> (matched file name or None, error or '')."""
    folder.mkdir(exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.ones((32, 24), np.uint8))
    out = {}
    for r in import_masks(ws, folder, author="a"):
        path = Path(ws.image(r.image_id).path).name if r.image_id else None
        out[r.path.name] = (path, r.error or "")
    return out


def test_wildcards_in_mask_names_match_nothing(named: Workspace, tmp_path: Path) -> None:
    got = _import(named, tmp_path / "m", "plai_.png", "%.png", "pl%.png", "_lain.png")
    for name in ("plai_.png", "%.png", "pl%.png", "_lain.png"):
        assert got[name][0] is None, got
        assert "no image whose file name or SOP Instance UID is" in got[name][1]
    assert named.db.execute("SELECT count(*) FROM revisions").fetchone()[0] == 0


def test_exact_name_and_stem_match(named: Workspace, tmp_path: Path) -> None:
    got = _import(named, tmp_path / "m", "plain.png", "plainer.png", "1.2.840.5.png")
    assert got == {
        "plain.png": ("plain.dcm", ""),
        "plainer.png": ("plainer.dcm", ""),
        "1.2.840.5.png": ("1.2.840.5", ""),  # a file name without suffix, dots and all
    }


def test_case_must_match_and_the_error_says_so(named: Workspace, tmp_path: Path) -> None:
    got = _import(named, tmp_path / "m", "PLAIN.png", "case_a.png")
    assert got["PLAIN.png"][0] is None and got["case_a.png"][0] is None
    assert "differs only in case from plain.dcm" in got["PLAIN.png"][1]
    assert "differs only in case from Case_A.dcm" in got["case_a.png"][1]
