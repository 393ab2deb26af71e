"""Workspace commands end to end: import, import-masks, status, history; errors as one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace


@pytest.fixture
def imported(tmp_path: Path, series_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    ws = tmp_path / "ws"
    assert main(["import", str(series_dir), "--workspace", str(ws)]) == 0
    assert "3 new image(s), 0 already indexed" in capsys.readouterr().out
    return ws


def _label_map(value: int, shape: tuple[int, int] = (32, 24)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[1:5, 2:9] = value
    return m


def test_import_masks_by_stem_with_per_file_errors(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "s0.png"), _label_map(1))
    cv2.imwrite(str(masks / "s1.png"), _label_map(1, (10, 10)))  # wrong size
    cv2.imwrite(str(masks / "s2.png"), np.dstack([_label_map(1)] * 3))  # colour, not labels
    cv2.imwrite(str(masks / "other.png"), _label_map(1))  # matches no image
    code = main(["import-masks", str(masks), "--workspace", str(imported), "--author", "dr.x"])
    out = capsys.readouterr().out
    assert code == 1
    assert "s0.png -> image 1" in out
    assert f"error: {masks / 's1.png'}: " in out and "mask is 10x10, the image is 24x32" in out
    assert "s2.png: colour PNG; expected a label map" in out
    assert "other.png: no image whose file name or SOP Instance UID is 'other'" in out
    assert "1 mask(s) imported, 3 failed" in out
    with Workspace.open(imported) as ws:
        rev = ws.revisions.confirmed(1).revision
        assert (rev.source, rev.author) == ("import", "dr.x")
        assert np.array_equal(ws.revisions.read_mask(rev), _label_map(1))


def test_import_masks_class_mismatch_against_model(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Workspace.open(imported) as ws:
        classes = [{"name": n, "color": [0, 0, 0]} for n in ("background", "kidney")]
        ws.models.register("abdomen", "1", spec={"classes": classes})
    masks = tmp_path / "masks"
    masks.mkdir()
    cv2.imwrite(str(masks / "s0.png"), _label_map(3))
    args = ["import-masks", str(masks), "--workspace", str(imported), "--author", "a"]
    assert main([*args, "--model", "abdomen"]) == 2
    assert "mask has class 3, the model has only 2 classes (0-1)" in capsys.readouterr().out
    assert main([*args, "--model", "nope"]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err


def test_import_masks_csv_map(imported: Path, tmp_path: Path, series_dir: Path) -> None:
    masks = tmp_path / "m"
    masks.mkdir()
    cv2.imwrite(str(masks / "anything.png"), _label_map(2))
    table = tmp_path / "map.csv"
    with open(table, "w", newline="") as fp:
        csv.writer(fp).writerows([["mask", "image"], ["anything.png", str(series_dir / "s2.dcm")]])
    args = ["import-masks", str(masks), "--workspace", str(imported), "--author", "a"]
    assert main([*args, "--map", str(table)]) == 0
    with Workspace.open(imported) as ws:
        assert ws.revisions.confirmed(3).revision.summary["pixels"]["2"] == 28


def test_status_and_history(imported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Workspace.open(imported) as ws:
        ws.revisions.save_mask(1, _label_map(1), source="ai", author="unet", model=("chest", "2"))
        ws.revisions.save_mask(1, _label_map(0), source="human", author="dr.y")
        ws.revisions.set_status(1, "approved", author="dr.y")
    assert main(["status", "--workspace", str(imported), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"] == 3 and data["status"] == {"approved": 1, "unreviewed": 2}
    ai = {"kind": "mask", "source": "ai", "model": "chest", "version": "2"}
    assert {**ai, "images": 1, "revisions": 1} in data["revisions"]
    assert main(["history", "1", "--workspace", str(imported)]) == 0
    out = capsys.readouterr().out
    assert "mask ai by unet chest 2" in out and "status human by dr.y: approved" in out


def test_unknown_image_and_bad_workspace_are_one_line(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "999", "--workspace", str(imported)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {imported}: no image with id 999")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["status", "--workspace", str(blocker / "ws")]) == 2
    assert "cannot create the workspace" in capsys.readouterr().err


def test_workspace_from_environment(
    imported: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDVIEWER_WORKSPACE", str(imported))
    assert main(["status"]) == 0
    assert capsys.readouterr().out.startswith("3 image(s)")


@pytest.mark.parametrize("fmt", ["dicom-seg", "png", "csv"])
def test_export_command(
    imported: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Workspace.open(imported) as ws:
        ws.revisions.save_mask(2, _label_map(1), source="human", author="dr.y")
    out = tmp_path / "out"
    assert main(["export", "--workspace", str(imported), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files and f"wrote {len(files)} file(s) to {out}" in printed
    suffix = {"dicom-seg": ".dcm", "png": ".png", "csv": ".csv"}[fmt]
    assert all(p.suffix == suffix for p in files)
