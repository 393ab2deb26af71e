"""PNG label maps and overlays, and the CSV table, checked value for value."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medviewer.imaging import ImageLoader, render
from medviewer.workspace import Workspace
from medviewer.workspace.export import export_workspace
from medviewer.workspace.export.csv_table import COLUMNS
from medviewer.workspace.export.png import OVERLAY_ALPHA
from tests.workspace.pg_server import BACKENDS, new_workspace_on

CLASSES = [
    {"name": "background", "color": [0, 0, 0]},
    {"name": "liver", "color": [255, 0, 0]},
    {"name": "spleen", "color": [0, 255, 0]},
    {"name": "kidney", "color": [0, 0, 255]},
]
CT_SOP = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def mask(rows: int, columns: int, value: int) -> np.ndarray:
    m = np.zeros((rows, columns), np.uint8)
    m[1 : rows // 2, 2 : columns // 2] = value
    m[rows // 2 :, columns // 2 :] = 2
    m[0, 0] = 3  # asymmetric corner: catches transposes
    return m


@pytest.fixture(scope="module", params=BACKENDS)
def export_ws(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Workspace]:
    """CT_small (AI + human mask, labels, approved), RT Dose (AI masks on frames 1-2 only)
    and a PNG photo (human mask only)."""
    tmp = tmp_path_factory.mktemp("pngcsv")
    data = tmp / "data"
    (data / "ct").mkdir(parents=True)
    (data / "photos").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), data / "ct")
    shutil.copy(get_testdata_file("rtdose.dcm"), data / "ct")
    photo = (np.arange(20 * 30).reshape(20, 30) % 200).astype(np.uint8)
    cv2.imwrite(str(data / "photos" / "scan.png"), photo)
    with new_workspace_on(request.param, tmp / "ws", request) as ws:
        ws.import_paths([data])
        ws.models.register("organs", "1", spec={"classes": CLASSES})
        ws.models.activate("organs", "1")
        for row in ws.images():
            name = Path(row.path).name
            if name == "CT_small.dcm" or (name == "rtdose.dcm" and row.frame < 2):
                ai = mask(row.rows, row.columns, 1)
                ws.revisions.save_mask(
                    row.id, ai, source="ai", author="unet", model=("organs", "1")
                )
            if name in ("CT_small.dcm", "scan.png"):
                ws.revisions.save_mask(
                    row.id, mask(row.rows, row.columns, 3), source="human", author="alice"
                )
        ct = image(ws, "CT_small.dcm").id
        ws.revisions.save_labels(ct, {"fracture": False, "nodule": True}, source="ai", author="u")
        labels = {"fracture": True, "nodule": False, "effusion": True}
        ws.revisions.save_labels(ct, labels, source="human", author="alice")
        ws.revisions.set_status(ct, "approved", author="bob")
        yield ws


def image(ws: Workspace, name: str, frame: int = 0):
    return next(r for r in ws.images() if Path(r.path).name == name and r.frame == frame)


def read_png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_png_label_maps_at_native_size(export_ws: Workspace, tmp_path: Path) -> None:
    report = export_workspace(export_ws, tmp_path, "png")
    ct, photo = image(export_ws, "CT_small.dcm"), image(export_ws, "scan.png")
    assert sorted(f.name for f in report.files) == [f"CT_{CT_SOP}_mask.png", "photos_scan_mask.png"]
    for row in (ct, photo):
        written = read_png(tmp_path / report.files[[ct, photo].index(row)].name)
        expected = export_ws.revisions.read_mask(export_ws.revisions.confirmed(row.id).revision)
        assert written.dtype == np.uint8 and written.shape == (row.rows, row.columns)
        assert np.array_equal(written, expected)
    assert report.exported == 2 and report.skipped == 15  # RT Dose frames have no final mask
    assert report.notes == ["15 image(s) have no final mask and were not exported."]


def test_png_original_names_frames(export_ws: Workspace, tmp_path: Path) -> None:
    report = export_workspace(export_ws, tmp_path, "png", which="original")
    dose = "RTDOSE_1.9.999.999.99.9.9999.9999.20030818153516"
    assert [f.name for f in report.files] == [
        f"CT_{CT_SOP}_mask.png",
        f"{dose}_f0001_mask.png",
        f"{dose}_f0002_mask.png",
    ]
    frame2 = image(export_ws, "rtdose.dcm", 1)
    ai = export_ws.revisions.read_mask(export_ws.revisions.original(frame2.id))
    assert np.array_equal(read_png(report.files[2]), ai)


def test_png_overlay_blends_class_colours(export_ws: Workspace, tmp_path: Path) -> None:
    report = export_workspace(export_ws, tmp_path, "png", overlay=True)
    ct = image(export_ws, "CT_small.dcm")
    overlay = cv2.cvtColor(read_png(tmp_path / f"CT_{CT_SOP}_overlay.png"), cv2.COLOR_BGR2RGB)
    grey = render(ImageLoader().image(export_ws.frame_ref(ct.id))).astype(np.float64)
    labels = export_ws.revisions.read_mask(export_ws.revisions.confirmed(ct.id).revision)
    expected = np.repeat(grey[..., None], 3, axis=2)
    for value, spec in enumerate(CLASSES[1:], start=1):
        where = labels == value
        colour = np.array(spec["color"], np.float64)
        expected[where] = (1 - OVERLAY_ALPHA) * expected[where] + OVERLAY_ALPHA * colour
    assert np.array_equal(overlay, np.rint(expected).astype(np.uint8))
    assert len(report.files) == 4  # two label maps, two overlays


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def read_csv(path: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fp:
        reader = csv.DictReader(fp)
        rows = {Path(r["path"]).name + "#" + r["frame_number"]: r for r in reader}
        return list(reader.fieldnames or []), rows


def test_csv_final(export_ws: Workspace, tmp_path: Path) -> None:
    report = export_workspace(export_ws, tmp_path, "csv")
    assert report.files == [tmp_path / "images_final.csv"]
    header, rows = read_csv(report.files[0])
    pixels = ["pixels_background", "pixels_liver", "pixels_spleen", "pixels_kidney"]
    # The photo's mask was drawn without an AI proposal: no model, so its classes are unnamed.
    unnamed = ["pixels_Class 1", "pixels_Class 2", "pixels_Class 3"]
    assert header[: len(COLUMNS)] == list(COLUMNS)
    assert sorted(header[len(COLUMNS) :]) == sorted(pixels + unnamed)
    assert len(rows) == 17
    ct = image(export_ws, "CT_small.dcm")
    rev = export_ws.revisions.confirmed(ct.id).revision
    counts = np.bincount(export_ws.revisions.read_mask(rev).ravel(), minlength=4)
    assert rows["CT_small.dcm#1"] == {
        "image_id": str(ct.id),
        "path": ct.path,
        "frame_number": "1",
        "patient_id": "1CT1",
        "study_uid": "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
        "series_uid": "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
        "sop_instance_uid": CT_SOP,
        "modality": "CT",
        "status": "approved",
        "status_author": "bob",
        "status_time": iso(ct.status_time),
        "labels": "fracture; effusion",
        "mask_revision": str(rev.id),
        "mask_source": "human",
        "mask_author": "alice",
        "model_name": "",
        "model_version": "",
        "mask_time": iso(rev.created_at),
        "confirmed_by": "alice",
        "confirmed_time": iso(rev.created_at),
        **{name: str(n) for name, n in zip(pixels, counts)},
        **{name: "" for name in unnamed},
    }
    photo = rows["scan.png#1"]
    assert (photo["study_uid"], photo["series_uid"], photo["sop_instance_uid"]) == ("", "", "")
    assert photo["status"] == "in_progress"
    photo_mask = mask(20, 30, 3)
    assert photo["pixels_Class 3"] == str((photo_mask == 3).sum()) and photo["pixels_kidney"] == ""
    dose = rows["rtdose.dcm#15"]
    assert dose["mask_revision"] == dose["pixels_liver"] == dose["labels"] == ""
    assert report.exported == 2 and report.skipped == 15
    assert report.notes == [
        "images_final.csv: 15 image(s) have no final mask; their mask and pixel columns are empty.",
        "images_final.csv: the masks of 1 image(s) come from no registered model, so their "
        f"classes are counted as 'Class N': image {image(export_ws, 'scan.png').id} (scan.png).",
    ]


def test_csv_original(export_ws: Workspace, tmp_path: Path) -> None:
    report = export_workspace(export_ws, tmp_path, "csv", which="original")
    _, rows = read_csv(tmp_path / "images_original.csv")
    ct = rows["CT_small.dcm#1"]
    rev = export_ws.revisions.original(image(export_ws, "CT_small.dcm").id)
    assert (ct["mask_revision"], ct["mask_source"], ct["mask_author"]) == (
        str(rev.id),
        "ai",
        "unet",
    )
    assert (ct["model_name"], ct["model_version"], ct["labels"]) == ("organs", "1", "nodule")
    assert rows["rtdose.dcm#2"]["mask_revision"] != "" and rows["scan.png#1"]["mask_revision"] == ""
    assert report.exported == 3 and report.skipped == 14
