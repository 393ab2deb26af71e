"""Exports of hostile or damaged workspaces (issue 17): spreadsheet formulas in the CSV are
neutralised, and a missing mask file costs only its own image."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

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
