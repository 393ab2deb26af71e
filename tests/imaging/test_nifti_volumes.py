"""NIfTI image volumes imported as series (issue 13, item 6): shown as DICOM shows their plane
(checked with a marker in a known patient corner), spacing from the header, a 4D file's time
points as series, and each bad file one line of the import report naming it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.demo.brain import FILES, _data_dir
from medviewer.imaging import FrameRef, ImageLoader, scan
from medviewer.imaging.budget import DecodeBudget
from medviewer.workspace import Workspace

SHAPE = (6, 5, 4)  # x, y, z voxels
ZOOMS = (2.0, 3.0, 4.0)
ORIGIN = (-10.0, 20.0, 30.0)


def ras_volume(folder: Path, name: str = "vol.nii.gz", axes: str = "RAS") -> Path:
    """A 6x5x4 mm grid stored with its voxel axes along `axes` (nibabel codes: i, j, k
    growing toward those directions); marker 100 in the patient's right, posterior,
    superior corner, 50 in the left, anterior, inferior one."""
    folder.mkdir(parents=True, exist_ok=True)
    data = np.zeros(SHAPE, np.int16)
    affine = np.diag([*ZOOMS, 1.0])
    affine[:3, 3] = ORIGIN
    image = nib.Nifti1Image(data, affine)
    # Reorient the empty grid first, then place the markers by world position.
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(tuple(axes))
    )
    image = image.as_reoriented(ornt)
    data = np.zeros(image.shape, np.int16)
    inverse = np.linalg.inv(image.affine)
    for value, corner in ((100, ("R", "P", "S")), (50, ("L", "A", "I"))):
        world = _corner(corner)
        ijk = np.rint(inverse @ np.array([*world, 1.0]))[:3].astype(int)
        data[tuple(ijk)] = value
    path = folder / name
    nib.save(nib.Nifti1Image(data, image.affine), path)
    return path


def _corner(codes: tuple[str, str, str]) -> tuple[float, float, float]:
    """RAS mm of the voxel centre at that corner of the RAS grid above."""
    top = [o + (n - 1) * z for o, n, z in zip(ORIGIN, SHAPE, ZOOMS, strict=True)]
    x = top[0] if "R" in codes else ORIGIN[0]  # RAS: x grows toward the right
    y = top[1] if "A" in codes else ORIGIN[1]
    z = top[2] if "S" in codes else ORIGIN[2]
    return (x, y, z)


def frames_of(path: Path) -> tuple[np.ndarray, object]:
    catalog = scan([path])
    assert catalog.problems == [] and catalog.skipped == []
    (inst,) = catalog.instances()
    return ImageLoader(cache_bytes=0).frames(inst), inst


def where(frames: np.ndarray, value: int) -> tuple[int, ...]:
    (found,) = np.argwhere(frames == value)
    return tuple(int(v) for v in found)


@pytest.mark.parametrize("axes", ["RAS", "LAS", "LPI", "PRS"])
def test_axial_volume_is_shown_as_radiologists_expect(tmp_path: Path, axes: str) -> None:
    """Whatever the file's voxel order, an axial volume shows the patient's right on the
    left, anterior up, slices from feet to head: the right posterior superior marker lands
    in column 0, the last row, the last slice; the left anterior inferior one at (0, 0, last
    column)."""
    frames, inst = frames_of(ras_volume(tmp_path, axes=axes))
    assert frames.shape == (4, 5, 6)  # slices, rows (y), columns (x)
    assert where(frames, 100) == (3, 4, 0)
    assert where(frames, 50) == (0, 0, 5)
    assert inst.pixel_spacing == pytest.approx((3.0, 2.0))  # between rows, between columns
    assert np.linalg.norm(inst.frame_step) == pytest.approx(4.0)
    # First pixel: the right anterior corner of the lowest slice, in LPS.
    right, anterior, low = _corner(("R", "A", "I"))
    assert inst.position == pytest.approx((-right, -anterior, low))


def test_sagittal_volume_is_shown_with_anterior_left_and_superior_up(tmp_path: Path) -> None:
    """A file whose slice (third) axis runs left-right is shown sagittally: columns from
    anterior to posterior, rows from head to feet, slices ascending along the normal
    (toward the patient's right)."""
    frames, _ = frames_of(ras_volume(tmp_path, axes="ASR"))  # slices along x
    assert frames.shape == (6, 4, 5)  # slices (x), rows (z), columns (y)
    # Marker 100: right (last slice, ascending toward the right), superior (row 0),
    # posterior (last column).
    assert where(frames, 100) == (5, 0, 4)
    assert where(frames, 50) == (0, 3, 0)


def test_scaled_voxels_are_real_values(tmp_path: Path) -> None:
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(SHAPE)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_slope_inter(0.5, -10.0)
    nib.save(image, tmp_path / "scaled.nii")
    frames, inst = frames_of(tmp_path / "scaled.nii")
    assert frames.dtype == np.float32 and inst.bits_allocated == 32
    assert frames.min() == pytest.approx(-10.0) and frames.max() == pytest.approx(49.5)


def test_4d_volume_is_one_series_per_time_point(tmp_path: Path) -> None:
    data = np.zeros((*SHAPE, 3), np.uint8)
    for t in range(3):
        data[..., t] = t + 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "dce.nii.gz")
    catalog = scan([tmp_path])
    series = catalog.series()
    assert [se.description for se in series] == ["dce t1/3", "dce t2/3", "dce t3/3"]
    loader = ImageLoader()  # one cache: the time points share a file, not their pixels
    for t, se in enumerate(series):
        (inst,) = se.instances
        assert inst.frames == 4 and inst.volume_index == t
        assert np.all(loader.frames(inst) == t + 1)
    with Workspace.open(tmp_path / "ws") as ws:
        result = ws.import_paths([tmp_path / "dce.nii.gz"])
        assert result.added == 12
        again = ws.import_paths([tmp_path / "dce.nii.gz"])
        assert (again.added, again.already) == (0, 12)
        last = ws.images()[-1]
        assert np.all(loader.image(ws.frame_ref(last.id)).pixels == 3)


def test_moved_nifti_keeps_its_images_and_revisions(tmp_path: Path) -> None:
    path = ras_volume(tmp_path / "a")
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([path])
        rows = ws.images()
        mask = np.zeros((rows[0].rows, rows[0].columns), np.uint8)
        mask[1, 2] = 1
        rev = ws.revisions.save_mask(rows[2].id, mask, source="human", author="a")
        moved = tmp_path / "b" / path.name
        moved.parent.mkdir()
        shutil.move(path, moved)
        result = ws.import_paths([moved])
        assert (result.added, result.already) == (0, 4)
        assert [r.id for r in ws.images()] == [r.id for r in rows]
        assert ws.images()[2].path == str(moved.resolve())
        assert ws.revisions.latest(rows[2].id, "mask").id == rev.id


# -- bad input: one line each in the import report, the others still imported ----------


def _bad_files(folder: Path) -> dict[str, str]:
    """File name -> the words its report line must hold."""
    folder.mkdir()
    good = nib.Nifti1Image(np.ones(SHAPE, np.int16), np.eye(4))
    raw = gzip.compress(good.to_bytes())
    (folder / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    cut = good.to_bytes()
    (folder / "short.nii").write_bytes(cut[: len(cut) - 40])
    huge = nib.Nifti1Header()
    huge.set_data_shape((30000, 30000, 2000))
    huge.set_data_dtype(np.int16)
    (folder / "absurd.nii.gz").write_bytes(gzip.compress(huge.binaryblock + b"\0" * 4))
    nib.save(nib.Nifti1Image(np.ones((6, 5), np.int16), np.eye(4)), folder / "flat.nii")
    (folder / "notes.nii").write_bytes(b"patient list, not an image\n" * 30)
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 2, 3), np.int16), np.eye(4)), folder / "v.nii")
    (folder / "zero.nii").write_bytes(b"")
    return {
        "truncated.nii.gz": "truncated",
        "short.nii": "truncated",
        "absurd.nii.gz": "decode budget",
        "flat.nii": "2D image",
        "notes.nii": "not a NIfTI file",
        "v.nii": "5D image",
        "zero.nii": "not a NIfTI file",
    }


def test_bad_files_are_reported_with_the_reason_and_import_goes_on(tmp_path: Path) -> None:
    expected = _bad_files(tmp_path / "data")
    ras_volume(tmp_path / "data", "good.nii.gz")
    with Workspace.open(tmp_path / "ws") as ws:
        result = ws.import_paths([tmp_path / "data"])
        assert result.added == 4  # the good volume's slices
        problems = ws.import_reports()[-1]["problems"]
    said = {Path(path).name: reason for path, reason in problems}
    assert set(said) == set(expected)
    for name, words in expected.items():
        assert words in said[name], (name, said[name])


def test_absurd_header_is_refused_before_any_allocation(tmp_path: Path) -> None:
    """The budget is checked from the header: a tiny budget refuses a small real file, and
    the message names the setting to raise."""
    path = ras_volume(tmp_path)
    catalog = scan([path], budget=DecodeBudget(frame_pixels=20))
    (problem,) = catalog.problems
    assert problem.path == path and "MEDVIEWER_MAX_FRAME_PIXELS" in problem.reason


def test_cli_import_lists_a_bad_nifti_and_imports_the_rest(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    ras_volume(data, "good.nii.gz")
    (data / "notes.nii").write_bytes(b"not an image at all" * 40)
    assert main(["import", str(data), "--workspace", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "notes.nii: not a NIfTI file" in out
    assert "4 new image(s)" in out


def test_mni_template_from_nilearn(tmp_path: Path) -> None:
    """A real file: nilearn's MNI152 2009 T1 template (197x233x189, 1 mm, RAS)."""
    folder = _data_dir()
    path = folder / FILES["t1"] if folder else None
    if path is None or not path.is_file():
        pytest.skip("nilearn's MNI152 template is not installed (the demo extra)")
    catalog = scan([path])
    (inst,) = catalog.instances()
    assert (inst.columns, inst.rows, inst.frames) == (197, 233, 189)
    assert inst.pixel_spacing == pytest.approx((1.0, 1.0))
    assert inst.frame_step == pytest.approx((0.0, 0.0, 1.0))
    image = ImageLoader(cache_bytes=0).image(FrameRef(inst, 100))
    source = np.asanyarray(nib.load(path).dataobj)  # RAS: x to the right, y to the front
    # Axial slice 100 from the feet: right on the left, anterior at the top.
    assert np.array_equal(image.pixels, source[::-1, ::-1, 100].T)
