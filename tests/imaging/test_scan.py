"""Import: grouping, sorting, DICOMDIR, raster files and a clear reason for every bad file."""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medviewer.imaging import Catalog, ImageLoader, ImageLoadError, read_frames, scan, verify
from medviewer.imaging import dicom as dicom_module
from tests.conftest import sample_file
from tests.imaging.helpers import write_ct_slice

# pydicom's broken-on-purpose files and the reason a user must read for each.
BROKEN = {
    "MR_truncated.dcm": "pixel data truncated: 8130 of 8192 bytes",
    "badVR.dcm": "invalid Number of Frames (0028,0008): '1A'",
    "meta_missing_tsyntax.dcm": "file meta has no Transfer Syntax UID (0002,0010)",
    "nested_priv_SQ.dcm": "pixel data without Rows (0028,0010)",
    "no_meta.dcm": "not a DICOM or image file",
}
# Headers fine, pixel stream corrupt: found when the pixels are decoded (verify / load).
UNDECODABLE = {
    "JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 Image Compression pixel data could "
    "not be decoded: pylibjpeg: Error decoding the J2K data",
    "JPEG-lossy.dcm": "JPEG Extended (Process 2 and 4) pixel data could not be decoded",
}


def _copy(names: list[str], folder: Path) -> Path:
    for name in names:
        shutil.copy(sample_file(name), folder / name)
    return folder


@pytest.mark.parametrize(("name", "reason"), BROKEN.items())
def test_each_broken_file_gives_its_reason(tmp_path: Path, name: str, reason: str) -> None:
    catalog = scan([_copy([name, "CT_small.dcm"], tmp_path)])
    assert [i.path.name for i in catalog.instances()] == ["CT_small.dcm"]
    assert [(p.path.name, p.reason) for p in catalog.problems] == [(name, reason)]


@pytest.mark.parametrize(("name", "reason"), UNDECODABLE.items())
def test_corrupt_pixel_stream_is_reported_on_decode(tmp_path: Path, name: str, reason: str) -> None:
    catalog = scan([_copy([name], tmp_path)])
    (inst,) = catalog.instances()
    with pytest.raises(ImageLoadError) as err:
        read_frames(inst)
    assert err.value.path == tmp_path / name
    assert str(err.value.reason).startswith(reason)
    verify(catalog)
    assert catalog.instances() == [] and catalog.patients == []
    assert catalog.problems[0].reason.startswith(reason)


def test_rt_plan_without_pixels_is_skipped_not_an_error(tmp_path: Path) -> None:
    catalog = scan([_copy(["rtplan_truncated.dcm", "rtplan.dcm"], tmp_path)])
    assert catalog.problems == []
    assert {p.reason for p in catalog.skipped} == {"no pixel data (RT Plan Storage)"}


def test_whole_pydicom_folder_imports_without_raising(pydicom_test_files: Path) -> None:
    catalog = scan([pydicom_test_files])
    assert len(catalog.instances()) > 50
    reasons = {p.path.name: p.reason for p in catalog.problems}
    for name, reason in BROKEN.items():
        assert reasons[name] == reason
    assert reasons["README.txt"] == "not a DICOM or image file"
    # DICOM files whose 128-byte preamble is a TIFF header are still DICOM.
    assert "CT_small.dcm" in {i.path.name for i in catalog.instances()}
    # Same SOP Instance UID in several encodings: one image, the rest reported as skipped.
    dup = [p for p in catalog.skipped if p.path.name == "MR_small_RLE.dcm"]
    assert dup and dup[0].reason.startswith("same SOP Instance UID as")


def test_missing_decoder_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Unavailable:
        is_available = False

    monkeypatch.setattr(dicom_module.pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    catalog = scan([_copy(["MR_small_jp2klossless.dcm", "JPEGLSNearLossless_08.dcm"], tmp_path)])
    reasons = sorted(p.reason for p in catalog.problems)
    assert reasons == [
        "no decoder installed for JPEG 2000 (JPEG 2000 Image Compression (Lossless Only))",
        "no decoder installed for JPEG-LS (JPEG-LS Lossy (Near-Lossless) Image Compression)",
    ]


def test_nonexistent_path_and_empty_and_garbage(tmp_path: Path) -> None:
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "half.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    catalog = scan([tmp_path, tmp_path / "nope"])
    reasons = {p.path.name: p.reason for p in catalog.problems}
    assert reasons["nope"] == "no such file or folder"
    assert reasons["empty.dcm"] == "empty file"
    assert reasons["notes.txt"] == "not a DICOM or image file"
    assert reasons["half.png"].startswith("PNG header unreadable")


def test_slices_sorted_by_position_on_the_normal(tmp_path: Path) -> None:
    # Oblique axial-ish orientation; instance numbers deliberately disagree with position.
    orientation = (1, 0, 0, 0, 0.8, -0.6)
    normal = np.cross(orientation[:3], orientation[3:])
    zs = [3.0, -1.0, 7.0, 1.0]
    for k, z in enumerate(zs):
        pos = tuple(float(v) for v in normal * z)
        px = np.full((8, 8), k, np.int16)
        write_ct_slice(
            tmp_path / f"s{k}.dcm",
            px,
            series_uid="1.2.9",
            position=pos,
            orientation=orientation,
            instance_number=10 - k,
        )
    (series,) = scan([tmp_path]).series()
    assert series.sorted_by == "position"
    assert [i.path.name for i in series.instances] == ["s1.dcm", "s3.dcm", "s0.dcm", "s2.dcm"]


def test_instance_number_fallback_then_path(tmp_path: Path) -> None:
    for k, n in enumerate([3, 1, 2]):
        write_ct_slice(
            tmp_path / f"a{k}.dcm",
            np.zeros((4, 4)),
            series_uid="1.5",
            position=None,
            instance_number=n,
        )
    (series,) = scan([tmp_path]).series()
    assert series.sorted_by == "instance number"
    assert [i.instance_number for i in series.instances] == [1, 2, 3]


def test_grouping_patient_study_series(tmp_path: Path) -> None:
    spec = [
        ("P1", "1.1", "1.1.1"),
        ("P1", "1.1", "1.1.2"),
        ("P1", "1.2", "1.2.1"),
        ("P2", "2.1", "2.1.1"),
    ]
    for k, (pid, st, se) in enumerate(spec):
        write_ct_slice(
            tmp_path / f"f{k}.dcm", np.zeros((4, 4)), series_uid=se, study_uid=st, patient_id=pid
        )
    catalog = scan([tmp_path])
    shape = {
        p.id: {st.uid: sorted(se.uid for se in st.series) for st in p.studies}
        for p in catalog.patients
    }
    assert shape == {"P1": {"1.1": ["1.1.1", "1.1.2"], "1.2": ["1.2.1"]}, "P2": {"2.1": ["2.1.1"]}}
    assert catalog.instances()[0].pixel_spacing == (0.7, 0.8)


def test_dicomdir_reads_referenced_files_once() -> None:
    dicomdir = sample_file("DICOMDIR")
    via_index = scan([dicomdir])
    via_folder = scan([dicomdir.parent])
    paths = sorted(i.path.resolve() for i in via_index.instances())
    assert len(paths) > 10 and len(set(paths)) == len(paths)
    assert paths == sorted(i.path.resolve() for i in via_folder.instances())
    assert {p.name for p in via_index.patients} == {"Doe^Archibald", "Doe^Peter"}


def test_multiframe_and_colour(tmp_path: Path) -> None:
    catalog = scan(
        [_copy(["rtdose.dcm", "examples_ybr_color.dcm", "examples_palette.dcm"], tmp_path)]
    )
    by_name = {i.path.name: i for i in catalog.instances()}
    loader = ImageLoader()
    assert by_name["rtdose.dcm"].frames == 15
    assert loader.frames(by_name["rtdose.dcm"]).shape == (15, 10, 10)
    ybr = loader.frames(by_name["examples_ybr_color.dcm"])
    assert ybr.shape == (30, 240, 320, 3)
    # YBR is converted to RGB: pydicom's own reference conversion agrees.
    ref = pydicom.dcmread(by_name["examples_ybr_color.dcm"].path).pixel_array
    assert np.array_equal(ybr, ref)
    palette = loader.frames(by_name["examples_palette.dcm"])
    assert palette.shape[-1] == 3  # palette applied: RGB, not indices


def test_enhanced_multiframe_functional_groups(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    path = write_ct_slice(tmp_path / "mf.dcm", np.zeros((3 * 4, 5)), series_uid="1.8")
    ds = pydicom.dcmread(path)
    del ds.PixelSpacing, ds.ImagePositionPatient, ds.ImageOrientationPatient
    ds.Rows, ds.NumberOfFrames = 4, 3
    measures, plane = Dataset(), Dataset()
    measures.PixelSpacing = [0.5, 0.25]
    plane.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [plane]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for z in range(3):
        pos, group = Dataset(), Dataset()
        pos.ImagePositionPatient = [0, 0, float(z)]
        group.PlanePositionSequence = [pos]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.save_as(path)
    (inst,) = scan([path]).instances()
    assert inst.frames == 3
    assert inst.pixel_spacing == (0.5, 0.25)
    assert inst.position == (0.0, 0.0, 0.0)
    assert inst.orientation == (1, 0, 0, 0, 1, 0)
    assert ImageLoader().frames(inst).shape == (3, 4, 5)


def test_raster_png_8_and_16_bit_jpeg_tiff(tmp_path: Path) -> None:
    grey16 = (np.arange(30 * 20, dtype=np.uint16).reshape(30, 20) * 97).astype(np.uint16)
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)  # red in the top-left corner: catches BGR/RGB swaps
    folder = tmp_path / "scans"
    folder.mkdir()
    cv2.imwrite(str(folder / "g16.png"), grey16)
    cv2.imwrite(str(folder / "rgb.png"), rgb[..., ::-1])
    cv2.imwrite(str(folder / "photo.jpg"), np.full((16, 16), 100, np.uint8))
    cv2.imwrite(str(folder / "slide.tif"), grey16)
    catalog = scan([folder])
    (series,) = catalog.series()
    assert len(series.instances) == 4 and catalog.problems == []
    by_name = {i.path.name: i for i in series.instances}
    assert by_name["g16.png"].bits_allocated == 16
    assert np.array_equal(read_frames(by_name["g16.png"])[0], grey16)
    assert np.array_equal(read_frames(by_name["slide.tif"])[0], grey16)
    assert tuple(read_frames(by_name["rgb.png"])[0, 0, 0]) == (255, 0, 0)
    assert read_frames(by_name["photo.jpg"]).shape == (1, 16, 16)


def test_raster_folders_without_patient_ids_are_separate_patients(tmp_path: Path) -> None:
    for name in ("anna", "bert"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "eye.png"), np.zeros((8, 8), np.uint8))
    catalog = scan([tmp_path])
    assert sorted(p.name for p in catalog.patients) == ["anna", "bert"]
    assert all(len(p.studies) == 1 for p in catalog.patients)


def test_truncated_png_fails_on_decode_with_reason(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])
    catalog = scan([tmp_path])
    (inst,) = catalog.instances()  # the header is intact
    with pytest.raises(ImageLoadError, match="could not be decoded"):
        read_frames(inst)


def test_file_deleted_after_import(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "x.dcm", np.zeros((4, 4)), series_uid="1.7")
    (inst,) = scan([path]).instances()
    path.unlink()
    with pytest.raises(ImageLoadError, match="no longer exists"):
        read_frames(inst)


def _scan_in_time(paths: list[Path], seconds: float = 20) -> Catalog:
    """scan() in a thread, so a read that blocks (a FIFO) fails the test instead of hanging it."""
    result: list[Catalog] = []
    worker = threading.Thread(target=lambda: result.append(scan(paths)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"scan({paths}) still running after {seconds} s"
    return result[0]


def _dicomdir(path: Path, refs: list[str | list[str]]) -> Path:
    """A DICOMDIR of IMAGE records referencing `refs` (ReferencedFileID as written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "../" is no valid CS value: that is the point
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        records = []
        for ref in refs:
            record = Dataset()
            record.DirectoryRecordType = "IMAGE"
            record.ReferencedFileID = ref
            records.append(record)
        ds.DirectoryRecordSequence = records
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_in_a_folder_is_skipped_not_read(tmp_path: Path) -> None:
    write_ct_slice(tmp_path / "a.dcm", np.zeros((4, 4), np.int16), series_uid="1.2.3")
    os.mkfifo(tmp_path / "pipe.dcm")  # nobody writes: opening it for reading blocks
    catalog = _scan_in_time([tmp_path])
    assert [i.path.name for i in catalog.instances()] == ["a.dcm"]
    assert [(p.path.name, p.reason) for p in catalog.skipped] == [
        ("pipe.dcm", "not a regular file: a named pipe (FIFO)")
    ]
    assert catalog.problems == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_dicomdir_never_follows_a_reference_outside_its_folder(tmp_path: Path) -> None:
    inside, outside = tmp_path / "disc", tmp_path / "elsewhere"
    (inside / "IMG").mkdir(parents=True)
    outside.mkdir()
    write_ct_slice(inside / "IMG" / "1", np.zeros((4, 4), np.int16), series_uid="1.2.3")
    write_ct_slice(outside / "2", np.zeros((4, 4), np.int16), series_uid="1.2.4")
    os.mkfifo(inside / "IMG" / "PIPE")
    (inside / "IMG" / "UP").symlink_to(outside / "2")
    refs: list[str | list[str]] = [
        ["IMG", "1"],
        ["..", "elsewhere", "2"],
        str(outside / "2"),
        "/dev/zero",
        ["IMG", "UP"],
        ["IMG", "PIPE"],
    ]
    dicomdir = _dicomdir(inside / "DICOMDIR", refs)
    catalog = _scan_in_time([dicomdir])
    assert [i.path.name for i in catalog.instances()] == ["1"]
    reasons = [(p.path.name, p.reason) for p in catalog.skipped]
    followed = f"outside the folder of DICOMDIR {dicomdir}, not followed"
    assert reasons == [
        ("2", followed),
        ("2", followed),
        ("zero", followed),
        ("UP", followed),
        ("PIPE", "not a regular file: a named pipe (FIFO)"),
    ]
    assert catalog.problems == []
