"""NIfTI label volumes: geometry checked against dcm2niix's conversion of the same series,
voxel for voxel; raster images, partial and lost masks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace
from medviewer.workspace.export import export_workspace
from tests.imaging.helpers import write_ct_slice

ROWS, COLUMNS, SLICES = 12, 16, 5
SPACING = (0.7, 0.9)  # between rows, between columns
STEP = 2.5  # mm between slices
INTERCEPT = -1024  # write_ct_slice's rescale intercept


def oblique(tilt: float, turn: float, sagittal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines rotated off the axial (or sagittal) plane."""
    a, b = np.deg2rad(tilt), np.deg2rad(turn)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    if sagittal:  # rows along y, columns along -z: what a sagittal series holds
        row, col = row[[2, 0, 1]], -col[[2, 0, 1]]
    return row, col


def label_slice(k: int) -> np.ndarray:
    """Slice k's mask: asymmetric (catches flips and transposes) and different per slice."""
    m = np.zeros((ROWS, COLUMNS), np.uint8)
    m[1:5, 2:9] = 1
    m[ROWS // 2 :, COLUMNS // 2 :] = 2
    m[0, 0] = 3
    m[-1, k] = 3
    return m


def write_series(folder: Path, row: np.ndarray, col: np.ndarray) -> None:
    """SLICES CT slices written out of order, instance numbers against the slice normal; each
    slice's pixels are 100 x its mask, so a converter's voxels show where our labels go."""
    folder.mkdir()
    normal = np.cross(row, col)
    origin = np.array([-30.0, 12.5, 40.0])
    for k in (3, 0, 4, 1, 2):
        write_ct_slice(
            folder / f"s{k}.dcm",
            label_slice(k).astype(np.int16) * 100 - INTERCEPT,
            series_uid="1.2.826.0.1.77.3",
            position=tuple(origin + k * STEP * normal),
            orientation=(*row, *col),
            instance_number=SLICES - k,
            spacing=SPACING,
        )


def import_with_masks(root: Path, data: Path, masked: set[int]) -> Workspace:
    """A workspace with human (confirmed) masks on the slices named by their file's k."""
    ws = Workspace.open(root)
    ws.import_paths([data])
    for r in ws.images():
        k = int(Path(r.path).stem.removeprefix("s")) if r.path.endswith(".dcm") else 0
        if k in masked:
            ws.revisions.save_mask(r.id, label_slice(k), source="human", author="alice")
    return ws


def dcm2niix(source: Path, out: Path) -> nib.Nifti1Image:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed (Debian package dcm2niix; `make debian-tools`)")
    out.mkdir()
    proc = subprocess.run(
        ["dcm2niix", "-z", "n", "-b", "n", "-f", "ref", "-o", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (converted,) = out.glob("*.nii")
    return nib.load(converted)


@pytest.mark.parametrize(
    "tilt,turn,sagittal", [(20, 10, False), (-35, 25, True)], ids=["oblique-axial", "sagittal"]
)
def test_label_volume_matches_dcm2niix(
    tmp_path: Path, tilt: float, turn: float, sagittal: bool
) -> None:
    write_series(tmp_path / "ct", *oblique(tilt, turn, sagittal))
    with import_with_masks(tmp_path / "ws", tmp_path / "ct", set(range(SLICES))) as ws:
        report = export_workspace(ws, tmp_path / "out", "nifti")
    (ours_path,) = report.files
    ours = nib.load(ours_path)
    ref = dcm2niix(tmp_path / "ct", tmp_path / "ref")
    assert ours.shape == ref.shape[:3] == (COLUMNS, ROWS, SLICES)
    assert np.allclose(ours.affine, ref.affine, atol=1e-3), (ours.affine, ref.affine)
    # Same voxel order: the converter's CT voxels are 100 x our labels, everywhere.
    labels = np.asarray(ours.dataobj)
    assert labels.dtype == np.uint8
    ct = np.rint(ref.get_fdata().reshape(labels.shape)) / 100  # HU, rescaled by dcm2niix
    assert np.array_equal(labels, ct)
    assert ours.header.get_intent()[0] == "label"
    assert report.exported == SLICES and report.failed == []


def test_unmasked_slices_are_zeros_and_counted(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", *oblique(0, 0))
    with import_with_masks(tmp_path / "ws", tmp_path / "ct", {1, 3}) as ws:
        report = export_workspace(ws, tmp_path / "out", "nifti")
    (path,) = report.files
    labels = np.asarray(nib.load(path).dataobj)
    assert [int(labels[..., k].any()) for k in range(SLICES)] == [0, 1, 0, 1, 0]
    assert np.array_equal(labels[..., 3], label_slice(3)[::-1].T)
    assert report.exported == 2 and report.skipped == 0
    assert report.notes == [f"{path.name}: 2 of 5 slices have a final mask; the others are zeros."]


def test_series_without_masks_is_not_written(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", *oblique(0, 0))
    with import_with_masks(tmp_path / "ws", tmp_path / "ct", set()) as ws:
        report = export_workspace(ws, tmp_path / "out", "nifti")
    assert report.files == [] and report.skipped == SLICES
    assert report.notes == ["5 image(s) have no final mask and were not exported."]


def test_a_png_is_one_slice_at_the_origin(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "scan.png"), np.full((ROWS, COLUMNS), 90, np.uint8))
    with import_with_masks(tmp_path / "ws", photos, {0}) as ws:
        report = export_workspace(ws, tmp_path / "out", "nifti")
    (path,) = report.files
    assert path.name == "photos_scan.nii.gz"
    image = nib.load(path)
    assert image.shape == (COLUMNS, ROWS, 1)
    assert np.array_equal(np.asarray(image.dataobj)[..., 0], label_slice(0)[::-1].T)
    # Axial at the origin, unit spacing, rows counted up from the last (dcm2niix's order).
    assert np.allclose(image.affine[:3, :3], np.diag([-1.0, 1.0, 1.0]))
    assert np.allclose(image.affine[:3, 3], [0.0, -(ROWS - 1), 0.0])


def test_a_lost_mask_is_named_and_its_slice_left_empty(tmp_path: Path) -> None:
    write_series(tmp_path / "ct", *oblique(0, 0))
    with import_with_masks(tmp_path / "ws", tmp_path / "ct", set(range(SLICES))) as ws:
        s2 = next(r for r in ws.images() if Path(r.path).name == "s2.dcm")
        lost = ws.blobs.path(ws.revisions.confirmed(s2.id).revision.blob)
    lost.unlink()
    out = tmp_path / "out"
    argv = ["export", "--workspace", str(tmp_path / "ws"), "--format", "nifti", "--out", str(out)]
    assert main(argv) == 1  # written, but not everything
    (path,) = out.glob("*.nii.gz")
    labels = np.asarray(nib.load(path).dataobj)
    assert [int(labels[..., k].any()) for k in range(SLICES)] == [1, 1, 0, 1, 1]
    with Workspace.open(tmp_path / "ws", readonly=True) as ws:
        report = export_workspace(ws, tmp_path / "again", "nifti")
    why = "stored mask missing or unreadable: No such file or directory"
    assert report.failed == [f"image {s2.id} (s2.dcm): {lost}: {why}"]
    assert report.exported == SLICES - 1


def test_slices_sharing_a_position_are_each_one_slice(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    folder.mkdir()
    for k in range(2):  # two acquisitions at one table position
        write_ct_slice(
            folder / f"s{k}.dcm",
            np.zeros((ROWS, COLUMNS), np.int16),
            series_uid="1.2.826.0.1.77.4",
            position=(0.0, 0.0, 5.0),
        )
    with import_with_masks(tmp_path / "ws", folder, {0, 1}) as ws:
        report = export_workspace(ws, tmp_path / "out", "nifti")
    assert len(report.files) == 2 and report.exported == 2
    assert all(nib.load(f).shape == (COLUMNS, ROWS, 1) for f in report.files)
    assert report.notes == [
        "Slices sharing one position were each written as a one-slice volume: "
        "series 1.2.826.0.1.77.4 (2 slices)."
    ]
