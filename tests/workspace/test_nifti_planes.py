"""A NIfTI volume in three planes through the viewer's own path (import, `load_volume_review`,
`render_plane`): head up, the patient's right on the screen's left, anterior up in axial and
on the left in sagittal; for a RAS file and for the same volume stored LPI."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medviewer.imaging import ImageLoader
from medviewer.workspace import Workspace
from medviewer.workspace.volume_review import load_volume_review

SHAPE = (20, 24, 16)  # i, j, k voxels


def _volume() -> np.ndarray:
    """Zero, with markers on the patient's right (i = 0: see `_write`), anterior (j = 23)
    and superior (k = 15) faces, each its own value."""
    v = np.zeros(SHAPE, np.int16)
    v[0, 10:14, 6:10] = 100  # right
    v[8:12, -1, 6:10] = 200  # anterior
    v[8:12, 10:14, -1] = 300  # superior
    return v


def _write(path: Path, flip: bool) -> Path:
    """1.5 x 1 x 2 mm voxels, x = -1.5 i in RAS+ (+x: the patient's right), so i = 0 is the
    rightmost column and i runs to the left, j to the front, k up; `flip` stores the same
    patient with i running to the right and k down."""
    v = _volume()
    affine = np.diag([-1.5, 1.0, 2.0, 1.0])
    if flip:
        v = v[::-1, :, ::-1].copy()
        affine = affine @ np.array(
            [[-1, 0, 0, SHAPE[0] - 1], [0, 1, 0, 0], [0, 0, -1, SHAPE[2] - 1], [0, 0, 0, 1]]
        )
    nib.save(nib.Nifti1Image(v, affine), path)
    return path


def _planes(tmp_path: Path, flip: bool) -> dict[str, np.ndarray]:
    folder = tmp_path / "nifti"
    folder.mkdir()
    _write(folder / "head.nii.gz", flip)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([folder])
        ids = [r.id for r in ws.images()]
        review = load_volume_review(ws, ids[len(ids) // 2], ImageLoader())
        out = {}
        for plane in ("axial", "coronal", "sagittal"):
            # The crosshair at the centre: through every marker.
            pv = review.reslicer.plane(review.stored, plane, review.reslicer.centre())
            out[plane] = np.asarray(pv.pixels)
        assert review.stored.shape[0] == SHAPE[2]  # one image per axial slice
        # The window comes from the middle slice (the first, below the markers, is empty).
        assert review.window is not None and review.window.center + review.window.width / 2 > 99
    return out


@pytest.mark.parametrize("flip", [False, True], ids=["RAS", "LPI"])
def test_nifti_planes_are_shown_as_a_radiologist_reads_them(tmp_path: Path, flip: bool) -> None:
    planes = _planes(tmp_path, flip)

    def where(plane: str, value: int) -> tuple[float, float]:
        rows, cols = np.nonzero(planes[plane] == value)
        assert rows.size, f"no marker {value} in the {plane} plane"
        return rows.mean(), cols.mean()

    axial, coronal, sagittal = (planes[p].shape for p in ("axial", "coronal", "sagittal"))
    # Axial: the patient's right on the screen's left, anterior at the top.
    assert where("axial", 100)[1] < 1
    assert where("axial", 200)[0] < 1
    # Coronal: head up, the patient's right on the left.
    assert where("coronal", 300)[0] < 1
    assert where("coronal", 100)[1] < 1
    # Sagittal: head up, anterior on the left.
    assert where("sagittal", 300)[0] < 1
    assert where("sagittal", 200)[1] < 1
    assert axial == (24, 20) and coronal == (16, 20) and sagittal == (16, 24)
