"""NIfTI label volume import (issue 13, item 6): matched to a workspace volume by shape and
affine; our own export comes back bit-identical; bad files end in one line each, before any
revision is written."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace
from medviewer.workspace.export import export_workspace
from medviewer.workspace.mask_import import import_masks
from tests.workspace.test_export_nifti import COLUMNS, ROWS, SLICES, oblique, write_series

CLASSES = [
    {"name": "background", "color": [0, 0, 0]},
    {"name": "liver", "color": [255, 0, 0]},
    {"name": "spleen", "color": [0, 255, 0]},
]
EMPTY = 2  # the slice (by file name s<k>.dcm) left without a mask


def slice_mask(k: int) -> np.ndarray:
    """Classes 1 and 2, asymmetric (catches flips and transposes), moving with the slice."""
    m = np.zeros((ROWS, COLUMNS), np.uint8)
    m[1 : 5 + k % 3, 2:9] = 1
    m[ROWS // 2 :, COLUMNS // 2 + k - 2 :] = 2
    m[0, k] = 2
    return m


@dataclass
class Exported:
    nifti: Path
    series: Path
    masks: dict[str, np.ndarray]  # file name of the slice -> its mask (EMPTY: none)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Our NIfTI export of an oblique 5-slice CT series: two classes, slice EMPTY unmasked."""
    tmp = tmp_path_factory.mktemp("niftiin")
    write_series(tmp / "ct", *oblique(20, 10))
    masks = {}
    with Workspace.open(tmp / "ws") as ws:
        ws.import_paths([tmp / "ct"])
        ws.models.register("organs", "1", spec={"classes": CLASSES})
        for row in ws.images():
            k = int(Path(row.path).stem[1:])
            if k != EMPTY:
                ws.revisions.save_mask(
                    row.id, slice_mask(k), source="human", author="alice", model=("organs", "1")
                )
                masks[Path(row.path).name] = slice_mask(k)
        [nifti] = export_workspace(ws, tmp / "out", "nifti").files
    return Exported(nifti, tmp / "ct", masks)


def fresh(tmp_path: Path, series: Path) -> Workspace:
    ws = Workspace.open(tmp_path / "ws2")
    ws.import_paths([series])
    ws.models.register("organs", "1", spec={"classes": CLASSES})
    return ws


def revision_count(ws: Workspace) -> int:
    return ws.db.execute("SELECT count(*) FROM revisions").fetchone()[0]


def write_nifti(path: Path, data: np.ndarray, like: Path) -> Path:
    """`data` with the affine of `like` (our export), as another tool might write it."""
    nib.save(nib.Nifti1Image(data, nib.load(like).affine), path)
    return path


def test_our_export_round_trips_bit_identical(exported: Exported, tmp_path: Path) -> None:
    with fresh(tmp_path, exported.series) as ws:
        results = import_masks(ws, exported.nifti.parent, author="bob", model="organs")
        assert [r.error for r in results] == [None] * SLICES
        for row in ws.images():
            rev = ws.revisions.latest(row.id, "mask")
            assert rev is not None, row.path  # every slice: the unmasked one gets an empty mask
            assert (rev.source, rev.author) == ("import", "bob")
            assert (rev.model_name, rev.model_version) == ("organs", "1")
            assert rev.summary["nifti"] == {"file": exported.nifti.name}
            got = ws.revisions.read_mask(rev)
            want = exported.masks.get(Path(row.path).name, np.zeros((ROWS, COLUMNS), np.uint8))
            assert got.dtype == np.uint8 and np.array_equal(got, want), row.path
        # And out again: the same bytes as the first export.
        [again] = export_workspace(ws, tmp_path / "out", "nifti").files
        assert np.array_equal(nib.load(again).dataobj, nib.load(exported.nifti).dataobj)


def test_one_file_given_and_no_model(exported: Exported, tmp_path: Path) -> None:
    with fresh(tmp_path, exported.series) as ws:
        results = import_masks(ws, exported.nifti, author="bob")
        assert [r.error for r in results] == [None] * SLICES
        rev = ws.revisions.get(results[0].revision_id)
        assert rev.model_name is None


def test_float_file_of_whole_numbers_imports(exported: Exported, tmp_path: Path) -> None:
    data = np.asarray(nib.load(exported.nifti).dataobj).astype(np.float32)
    path = write_nifti(tmp_path / "float.nii", data, exported.nifti)
    with fresh(tmp_path, exported.series) as ws:
        results = import_masks(ws, path, author="bob", model="organs")
        assert [r.error for r in results] == [None] * SLICES


def one_error(ws: Workspace, path: Path, model: str | None = "organs") -> str:
    """The single error line for `path`, and no revision written."""
    [result] = import_masks(ws, path, author="bob", model=model)
    assert result.error is not None and result.revision_id is None
    assert result.error.startswith(f"{path}: ") and "\n" not in result.error
    assert revision_count(ws) == 0
    return result.error


def test_no_matching_volume_names_shapes(exported: Exported, tmp_path: Path) -> None:
    data = np.asarray(nib.load(exported.nifti).dataobj)
    short = write_nifti(tmp_path / "short.nii.gz", data[..., :4], exported.nifti)
    moved_affine = nib.load(exported.nifti).affine.copy()
    moved_affine[0, 3] += 0.5  # half a millimetre off: another volume
    moved = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(data, moved_affine), moved)
    with fresh(tmp_path, exported.series) as ws:
        error = one_error(ws, short)
        assert f"shape {COLUMNS}x{ROWS}x4 and affine" in error
        assert f"({COLUMNS}x{ROWS}x{SLICES}), same affine" in error
        error = one_error(ws, moved)
        assert f"shape {COLUMNS}x{ROWS}x{SLICES} and affine" in error
        assert "affine off by 0.5" in error


def test_truncated_and_not_nifti(exported: Exported, tmp_path: Path) -> None:
    data = exported.nifti.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.nii"
    text.write_text("not an image\n")
    raw = gzip.decompress(data)
    short = tmp_path / "short.nii"  # header whole, voxels cut
    short.write_bytes(raw[: len(raw) - 10])
    with fresh(tmp_path, exported.series) as ws:
        assert "not a readable NIfTI file (truncated: its gzip stream" in one_error(ws, cut)
        assert "(truncated: 950 bytes of voxel data, its 16x12x5 voxels need 960)" in one_error(
            ws, short
        )
        assert one_error(ws, text).endswith("not a NIfTI file (no NIfTI-1 or NIfTI-2 header)")


def test_a_decompression_bomb_is_refused_from_its_header(
    exported: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .nii.gz of 2 MB that declares and inflates to 2 GB: refused before it is inflated."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 2048))
    header.set_data_dtype(np.uint8)
    bomb = tmp_path / "bomb.nii.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as fp:
        fp.write(header.binaryblock + b"\0" * 4)  # the extension flag; voxels from byte 352
        zeros = bytes(1 << 24)
        for _ in range(4):  # 64 MB of the 2 GB declared: enough to show nothing is inflated
            fp.write(zeros)
    monkeypatch.setenv("MEDVIEWER_MAX_DECODED_MB", "512")
    with fresh(tmp_path, exported.series) as ws:
        error = one_error(ws, bomb)
    assert "over the decode budget of 512 MB (MEDVIEWER_MAX_DECODED_MB)" in error, error


def test_values_not_classes_of_the_model(exported: Exported, tmp_path: Path) -> None:
    data = np.asarray(nib.load(exported.nifti).dataobj).copy()
    data[0, 0, 0] = 3
    path = write_nifti(tmp_path / "three.nii.gz", data, exported.nifti)
    with fresh(tmp_path, exported.series) as ws:
        error = one_error(ws, path)
        assert "label value(s) 3 are not classes of model organs 1" in error
        assert "(0 background, 1 liver, 2 spleen)" in error


def test_non_integer_data(exported: Exported, tmp_path: Path) -> None:
    data = np.asarray(nib.load(exported.nifti).dataobj).astype(np.float32)
    data[1, 2, 3] = 0.5
    path = write_nifti(tmp_path / "prob.nii.gz", data, exported.nifti)
    with fresh(tmp_path, exported.series) as ws:
        assert "non-integer data (1 voxel(s), first 0.5)" in one_error(ws, path, model=None)


def test_cli_reports_each_slice(exported: Exported, tmp_path: Path, capsys) -> None:
    fresh(tmp_path, exported.series).close()
    rc = main(
        [
            "import-masks",
            str(exported.nifti),
            "--author",
            "bob",
            "--workspace",
            str(tmp_path / "ws2"),
        ]
    )
    assert rc == 0
    assert f"{SLICES} mask(s) imported, 0 failed" in capsys.readouterr().out
