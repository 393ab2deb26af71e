"""DICOM SEG export on real files: every SEG passes dciodvfy and reads back with highdicom to the
exact label maps; what a SEG cannot hold (raster, RT Dose) comes out as PNG with a note."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medviewer.imaging.palette import DEFAULT_COLOURS
from medviewer.workspace import Workspace
from medviewer.workspace.export import ExportReport, chosen_mask, export_workspace
from tests.workspace.pg_server import BACKENDS, new_workspace_on

CLASSES = [
    {"name": "background", "color": [0, 0, 0]},
    {"name": "liver", "color": [255, 0, 0]},
    {"name": "spleen", "color": [0, 255, 0]},
    {"name": "kidney", "color": [0, 0, 255]},
]
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def pattern(rows: int, columns: int, shift: int) -> np.ndarray:
    """Classes 1 and 2 in blocks; the human version (shift 0) adds class 3 in a corner."""
    m = np.zeros((rows, columns), np.uint8)
    m[rows // 8 + shift : rows // 2, columns // 8 : columns // 2] = 1
    m[rows // 2 : 7 * rows // 8, columns // 2 + shift : 7 * columns // 8] = 2
    if shift == 0:
        m[0:2, 0:3] = 3
    return m


def write_study(root: Path) -> None:
    """CT_small; three slices of a new series; an enhanced CT made of them; two Secondary
    Captures without position; RT Dose (legacy multi-frame); a PNG photo."""
    ct = get_testdata_file("CT_small.dcm")
    for sub in ("ct", "series", "enhanced", "sc", "dose", "photos"):
        (root / sub).mkdir(parents=True)
    shutil.copy(ct, root / "ct" / "CT_small.dcm")
    shutil.copy(get_testdata_file("rtdose.dcm"), root / "dose" / "rtdose.dcm")
    series, frame_of_reference, slices = generate_uid(), generate_uid(), []
    for i in range(3):
        ds = pydicom.dcmread(ct)
        ds.SeriesInstanceUID, ds.FrameOfReferenceUID = series, frame_of_reference
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5 * i]
        ds.SliceLocation, ds.InstanceNumber = -75 + 5 * i, i + 1
        ds.SeriesDescription, ds.SeriesNumber = "Three slices", 7
        ds.save_as(root / "series" / f"s{i}.dcm")
        slices.append(ds)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        slices, generate_uid(), 8, generate_uid(), 1
    )
    enhanced.SeriesDescription = "Enhanced"
    enhanced.save_as(root / "enhanced" / "enhanced.dcm")
    series = generate_uid()
    for i in range(2):
        ds = pydicom.dcmread(ct)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.Modality, ds.SeriesDescription = series, "OT", "No position"
        for keyword in ("FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient"):
            delattr(ds, keyword)
        ds.save_as(root / "sc" / f"sc{i}.dcm")
    photo = (np.arange(24 * 32).reshape(24, 32) % 256).astype(np.uint8)
    cv2.imwrite(str(root / "photos" / "scan.png"), photo)


@dataclass
class Study:
    ws: Workspace
    tmp: Path


@pytest.fixture(scope="module", params=BACKENDS)
def study(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Study]:
    """AI masks on every image; human masks on all but the middle slice of 'Three slices',
    the third slice's human mask is empty, RT Dose has a human mask on frame 1 only."""
    tmp = tmp_path_factory.mktemp("seg")
    write_study(tmp / "data")
    with new_workspace_on(request.param, tmp / "ws", request) as ws:
        ws.import_paths([tmp / "data"])
        ws.models.register("organs", "1", spec={"classes": CLASSES})
        ws.models.activate("organs", "1")
        for row in ws.images():
            ai = pattern(row.rows, row.columns, 1)
            ws.revisions.save_mask(row.id, ai, source="ai", author="unet", model=("organs", "1"))
            if row.series_description == "Three slices" and row.position == 1:
                continue
            if "rtdose" in row.path and row.frame > 0:
                continue
            human = pattern(row.rows, row.columns, 0)
            if row.series_description == "Three slices" and row.position == 2:
                human[:] = 0
            ws.revisions.save_mask(row.id, human, source="human", author="alice")
        yield Study(ws, tmp)


def dciodvfy(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not on PATH")
    return subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)


def seg_files(report: ExportReport) -> list[Path]:
    return [f for f in report.files if f.name.endswith(".seg.dcm")]


def read_back(ws: Workspace, report: ExportReport, which: str) -> dict[int, np.ndarray]:
    """Image id -> label map read from the SEGs with highdicom, checked against the workspace."""
    by_sop: dict[str, list] = {}
    for row in ws.images():
        by_sop.setdefault(ws.frame_ref(row.id).instance.sop_instance_uid, []).append(row)
    got: dict[int, np.ndarray] = {}
    for path in seg_files(report):
        seg = hd.seg.segread(path)
        uids = [uid for _, _, uid in seg.get_source_image_uids()]
        for uid in uids:
            rows = sorted(by_sop[uid], key=lambda r: r.frame)
            if len(rows) > 1:  # multi-frame source: by frame number
                maps = seg.get_pixels_by_source_frame(
                    uid,
                    [r.frame + 1 for r in rows],
                    combine_segments=True,
                    assert_missing_frames_are_empty=True,
                )
            else:
                maps = seg.get_pixels_by_source_instance(
                    [uid], combine_segments=True, assert_missing_frames_are_empty=True
                )
            for row, label_map in zip(rows, maps):
                got[row.id] = label_map
    for image_id, label_map in got.items():
        rev = chosen_mask(ws, image_id, which)
        if rev is None:  # a frame of a multi-frame source without a mask: stored empty
            assert not label_map.any()
        else:
            assert np.array_equal(label_map, ws.revisions.read_mask(rev)), image_id
    return got


def row_named(ws: Workspace, name: str, frame: int = 0):
    return next(r for r in ws.images() if Path(r.path).name == name and r.frame == frame)


@pytest.fixture(scope="module")
def final_report(study: Study) -> ExportReport:
    return export_workspace(study.ws, study.tmp / "final", "dicom-seg")


def test_every_seg_passes_dciodvfy(final_report: ExportReport) -> None:
    files = seg_files(final_report)
    assert len(files) == 5  # CT_small, three slices, enhanced, 2 x no position
    for path in files:
        result = dciodvfy(path)
        assert result.returncode == 0, f"{path.name}:\n{result.stderr}"
        assert "Error" not in result.stderr, result.stderr


def test_final_masks_read_back_exactly(study: Study, final_report: ExportReport) -> None:
    ws = study.ws
    got = read_back(ws, final_report, "final")
    dicom_with_final = {
        r.id
        for r in ws.images()
        if ws.revisions.confirmed(r.id) and r.path.endswith(".dcm") and "rtdose" not in r.path
    }
    assert set(got) == dicom_with_final  # the middle slice (no final mask) is not referenced
    assert row_named(ws, "s1.dcm").id not in got
    empty = row_named(ws, "s2.dcm").id
    assert not got[empty].any()  # referenced, but all its frames were omitted as empty
    seg = hd.seg.segread(next(f for f in seg_files(final_report) if "Three_slices" in f.name))
    assert seg.NumberOfFrames == 3  # s0's three segments; s2 contributes no frames
    # 15 without a final mask: the middle slice and RT Dose frames 2-15.
    assert final_report.skipped == 15 and final_report.exported == 25 - 15


def test_segments_carry_model_classes_and_manual_algorithm(final_report: ExportReport) -> None:
    for path in seg_files(final_report):
        seg = hd.seg.segread(path)
        assert seg.SegmentationType == "BINARY"
        assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "spleen", "kidney"]
        for desc, spec in zip(seg.SegmentSequence, CLASSES[1:]):
            lab = hd.color.CIELabColor.from_dicom_value(desc.RecommendedDisplayCIELabValue)
            assert lab.to_rgb() == tuple(spec["color"])
            assert desc.SegmentAlgorithmType == "MANUAL"
            assert "SegmentationAlgorithmIdentificationSequence" not in desc
            assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "85756007"
        assert seg.ContentCreatorName == "alice^"


def test_raster_and_rt_dose_fall_back_to_png_with_a_note(
    study: Study, final_report: ExportReport
) -> None:
    ws = study.ws
    photo = row_named(ws, "scan.png")
    png = study.tmp / "final" / "photos_scan_mask.png"
    assert png in final_report.files
    written = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(
        written, ws.revisions.read_mask(ws.revisions.confirmed(photo.id).revision)
    )
    dose = [f for f in final_report.files if f.name.startswith("RTDOSE_")]
    assert [f.name.rsplit("_", 2)[-2] for f in dose] == ["f0001"]  # frame 1 only has a final
    notes = " ".join(final_report.notes)
    assert "scan.png" in notes and "not DICOM" in notes
    assert "rtdose.dcm frame 1" in notes and "RT Dose" in notes
    assert "No position" in notes and "own SEG file" in notes
    assert "15 image(s) have no final mask" in notes


def test_original_exports_the_ai_revisions(study: Study, final_report: ExportReport) -> None:
    ws = study.ws
    report = export_workspace(ws, study.tmp / "original", "dicom-seg", which="original")
    got = read_back(ws, report, "original")
    middle = row_named(ws, "s1.dcm").id
    assert middle in got  # has an AI mask, though no human one
    ct = row_named(ws, "CT_small.dcm").id
    final = read_back(ws, final_report, "final")
    assert not np.array_equal(got[ct], final[ct])
    assert report.skipped == 0
    for path in seg_files(report):
        assert dciodvfy(path).returncode == 0
        desc = hd.seg.segread(path).SegmentSequence[0]
        assert desc.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("organs", "1")


def test_unknown_model_gives_class_n_and_default_colours(tmp_path: Path) -> None:
    (tmp_path / "ct").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct")
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "ct"])
        image = ws.images()[0]
        mask = pattern(image.rows, image.columns, 1)
        ws.revisions.save_mask(image.id, mask, source="import", author="gt")
        report = export_workspace(ws, tmp_path / "out", "dicom-seg")
        [path] = seg_files(report)
        assert dciodvfy(path).returncode == 0
        seg = hd.seg.segread(path)
        assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Class 1", "Class 2"]
        colours = [
            hd.color.CIELabColor.from_dicom_value(d.RecommendedDisplayCIELabValue).to_rgb()
            for d in seg.SegmentSequence
        ]
        assert colours == list(DEFAULT_COLOURS[1:3])
        assert "no registered model" in " ".join(report.notes)
        assert np.array_equal(read_back(ws, report, "final")[image.id], mask)


def test_classes_from_another_registered_version(tmp_path: Path) -> None:
    (tmp_path / "ct").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "ct")
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "ct"])
        ws.models.register("organs", "2", spec={"classes": CLASSES})  # registered, not active
        image = ws.images()[0]
        mask = pattern(image.rows, image.columns, 0)
        ws.revisions.save_mask(image.id, mask, source="ai", author="unet", model=("organs", "1"))
        report = export_workspace(ws, tmp_path / "out", "dicom-seg", which="original")
        labels = [d.SegmentLabel for d in hd.seg.segread(seg_files(report)[0]).SegmentSequence]
        assert labels == ["liver", "spleen", "kidney"]


def test_bad_arguments_are_refused(study: Study) -> None:
    with pytest.raises(ValueError, match="dicom-seg"):
        export_workspace(study.ws, study.tmp / "x", "jpeg")
    with pytest.raises(ValueError, match="original"):
        export_workspace(study.ws, study.tmp / "x", "png", which="latest")
