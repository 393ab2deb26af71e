"""Re-importing a moved or copied folder repoints its images, DICOM and raster alike, and keeps
their revisions (issue 17, item 13: the PNG/JPEG images were added again without them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from medviewer.imaging import ImageLoader
from medviewer.workspace import Workspace
from medviewer.workspace.schema import SCHEMA_VERSION
from tests.imaging.helpers import write_ct_slice


def _photo(path: Path, value: int) -> None:
    px = np.full((20, 30), value, np.uint8)
    px[0, 0] = 255  # asymmetric: catches a transpose
    cv2.imwrite(str(path), px)


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    """Two CT slices and two photos (distinct content) under one folder."""
    root = tmp_path / "old" / "studies"
    (root / "ct").mkdir(parents=True)
    (root / "photos").mkdir()
    for k in range(2):
        px = np.full((32, 24), 100 * k, np.int16)
        write_ct_slice(root / "ct" / f"s{k}.dcm", px, series_uid="1.2.3.1", position=(0, 0, k))
    _photo(root / "photos" / "eye_left.png", 40)
    _photo(root / "photos" / "eye_right.png", 80)
    return root


def _reviewed(ws: Workspace) -> dict[str, tuple[int, list[int]]]:
    """File name -> (image id, revision ids), after giving every image a mask and approval."""
    out = {}
    for row in ws.images():
        mask = np.zeros((row.rows, row.columns), np.uint8)
        mask[1:4, 2:6] = 1
        ws.revisions.save_mask(row.id, mask, source="human", author="dr")
        ws.revisions.set_status(row.id, "approved", author="dr")
        out[Path(row.path).name] = (row.id, [r.id for r in ws.revisions.history(row.id)])
    return out


def _state(ws: Workspace) -> dict[str, tuple[int, list[int]]]:
    return {
        Path(r.path).name: (r.id, [v.id for v in ws.revisions.history(r.id)]) for r in ws.images()
    }


@pytest.mark.parametrize("how", ["move", "copy"])
def test_moved_folder_is_repointed_with_its_revisions(
    studies: Path, tmp_path: Path, how: str
) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([studies])
        before = _reviewed(ws)
        new = tmp_path / "new" / "studies"
        new.parent.mkdir()
        (shutil.move if how == "move" else shutil.copytree)(studies, new)
        result = ws.import_paths([new])
        assert (result.added, result.already) == (0, 4)
        assert _state(ws) == before
        for row in ws.images():
            assert Path(row.path).is_relative_to(new), row.path
            assert row.status == "approved"
            pixels = ImageLoader().image(ws.frame_ref(row.id)).pixels
            assert pixels.shape[:2] == (row.rows, row.columns)
        photo = next(r for r in ws.images() if r.path.endswith("eye_left.png"))
        assert ws.find_image(str(new / "photos" / "eye_left.png")).id == photo.id


def test_a_raster_is_recognised_by_name_and_content_only(studies: Path, tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([studies])
        before = _reviewed(ws)
        new = tmp_path / "new"
        new.mkdir()
        shutil.copy(studies / "photos" / "eye_left.png", new / "renamed.png")  # other name
        _photo(new / "eye_right.png", 81)  # same name, other content
        assert ws.import_paths([new]).added == 2
        assert {k: v for k, v in _state(ws).items() if k in before} == before


def test_both_copies_in_one_import_stay_two_images(studies: Path, tmp_path: Path) -> None:
    """The old folder is imported again beside its copy: nothing moved, so nothing repoints."""
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([studies])
        before = _reviewed(ws)
        copy = tmp_path / "copy"
        shutil.copytree(studies / "photos", copy)
        result = ws.import_paths([studies, copy])
        assert result.added == 2
        assert {k: v for k, v in _state(ws).items() if k in before} == before


def test_raster_imported_before_content_was_kept_is_repointed_from_a_copy(
    studies: Path, tmp_path: Path
) -> None:
    """A workspace of schema 1 holds no content hash: after the upgrade, the old file, still
    there, is hashed to recognise its copy."""
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([studies])
        before = _reviewed(ws)
        ws.db.executescript(
            "DROP INDEX images_content; ALTER TABLE images DROP COLUMN content_hash;"
            " DROP TABLE leases; DROP INDEX images_conflict;"
            " ALTER TABLE images DROP COLUMN conflict; ALTER TABLE models DROP COLUMN files;"
            " PRAGMA user_version = 1;"
        )
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert {r[0] for r in ws.db.execute("SELECT content_hash FROM images")} == {None}
        new = tmp_path / "new"
        shutil.copytree(studies, new)
        assert ws.import_paths([new]).added == 0
        assert _state(ws) == before
