"""Exports of hostile or damaged workspaces (issue 17): spreadsheet formulas in the CSV are
neutralised, and a missing mask file costs only its own image."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace
from medviewer.workspace.export import export_workspace
from tests.imaging.helpers import write_ct_slice

FORMULAS = ("=1+1", "+SUM(A1)", "@evil", '=HYPERLINK("http://x","y")', "-2+3", "\tx", "\r=1")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fp:
        return list(csv.DictReader(fp))


def test_csv_neutralises_formulas_in_text_cells(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    patients = [*FORMULAS, "-12", "P 1"]
    for k, pid in enumerate(patients):
        px = np.full((8, 6), k, np.int16)
        write_ct_slice(
            data / f"{k}.dcm", px, series_uid=f"1.2.3.{k}", study_uid=f"1.2.4.{k}", patient_id=pid
        )
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([data])
        for k, row in enumerate(ws.images()):
            author = FORMULAS[k % len(FORMULAS)]
            ws.revisions.save_mask(row.id, np.ones((8, 6), np.uint8), source="human", author=author)
            ws.revisions.save_labels(
                row.id, {"=cmd|' /C calc'!A0": True}, source="human", author="a"
            )
            ws.revisions.set_status(row.id, "approved", author=author)
        report = export_workspace(ws, tmp_path / "out", "csv")
    rows = _csv_rows(report.files[0])
    assert sorted(r["patient_id"] for r in rows) == sorted(
        [*("'" + f for f in FORMULAS), "-12", "P 1"]  # a number is no formula: kept
    )
    for r in rows:
        for column in ("status_author", "mask_author", "confirmed_by", "labels"):
            assert r[column].startswith("'"), (column, r[column])
        assert r["image_id"].isdigit() and r["pixels_Class 1"] == "48"  # numbers stay numbers
        assert r["frame_number"] == "1"


@pytest.fixture
def lost_blob(tmp_path: Path, series_dir: Path) -> tuple[Path, str]:
    """Three CT slices and a PNG photo, each with its own human mask; the middle slice's
    mask file deleted. Returns the workspace and the deleted blob's path."""
    photo = tmp_path / "photos"
    photo.mkdir()
    cv2.imwrite(str(photo / "scan.png"), np.full((20, 30), 90, np.uint8))
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([series_dir, photo])
        for k, row in enumerate(ws.images()):
            mask = np.zeros((row.rows, row.columns), np.uint8)
            mask[: k + 2, : k + 2] = 1
            rev = ws.revisions.save_mask(row.id, mask, source="human", author="a")
            if Path(row.path).name == "s1.dcm":
                lost = ws.blobs.path(rev.blob)
    lost.unlink()
    return tmp_path / "ws", str(lost)


@pytest.mark.parametrize("fmt", ["png", "dicom-seg"])
def test_a_missing_mask_file_costs_only_its_image(
    lost_blob: tuple[Path, str], tmp_path: Path, fmt: str
) -> None:
    root, lost = lost_blob
    with Workspace.open(root, readonly=True) as ws:
        report = export_workspace(ws, tmp_path / "out", fmt)
        s1 = next(r.id for r in ws.images() if Path(r.path).name == "s1.dcm")
        s1_uid = ws.frame_ref(s1).instance.sop_instance_uid
    assert report.exported == 3
    assert report.failed == [
        f"image {s1} (s1.dcm): {lost}: stored mask missing or unreadable: No such file or directory"
    ]
    names = sorted(f.name for f in report.files)
    if fmt == "png":
        assert len(names) == 3 and not any(s1_uid in n for n in names)
        assert "photos_scan_mask.png" in names
    else:
        seg = next(f for f in report.files if f.name.endswith(".seg.dcm"))
        assert len(pydicom.dcmread(seg).ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 2
        assert any(n.endswith("_mask.png") for n in names)  # the photo, as PNG


def test_export_command_names_what_it_skipped_and_exits_non_zero(
    lost_blob: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, lost = lost_blob
    out = tmp_path / "out"
    assert main(["export", "--workspace", str(root), "--format", "png", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"(s1.dcm): {lost}: stored mask missing or unreadable" in printed
    assert f"wrote 3 file(s) to {out}; 1 image(s) could not be exported (listed above)" in printed
