"""Three planes of a volume: radiological orientation, physical aspect, clicks back to voxels.

The phantom's value at a voxel encodes where it lies in the patient (L, P, S in mm), so a
flipped or transposed plane fails; the same phantom acquired axially, coronally and feet-first
must give the same three planes.
"""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing import label_ops
from medviewer.imaging.geometry import Plane, stack
from medviewer.imaging.reslice import PLANES, GeometryError, Reslicer, VolumeAxes

N = 6  # voxels per side, 1 mm isotropic, so every acquisition samples the same points


def code(lps: np.ndarray) -> np.ndarray:
    """A value that says where a point lies: L + 100 P + 10000 S (mm, 0 .. N-1)."""
    return np.rint(lps[..., 0] + 100 * lps[..., 1] + 10000 * lps[..., 2]).astype(np.int32)


def acquire(orientation: tuple[float, ...]) -> tuple[np.ndarray, VolumeAxes]:
    """The phantom as a scanner would store it with this Image Orientation: planes placed
    with their own positions, ordered by `geometry.stack`, voxels filled from patient space."""
    o = np.asarray(orientation, float)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    # First pixel of each slice: the corner of the cube the directions start from.
    corner = np.where(row_dir + col_dir + normal < 0, N - 1, 0).astype(float)
    planes = [
        Plane(N, N, tuple(corner + k * normal), tuple(orientation), (1.0, 1.0))
        for k in reversed(range(N))  # given in reverse: stack must sort them
    ]
    st = stack(planes)
    s, r, c = np.meshgrid(np.arange(N), np.arange(N), np.arange(N), indexing="ij")
    first = np.asarray(planes[st.order[0]].position)
    lps = first + c[..., None] * row_dir + r[..., None] * col_dir + s[..., None] * normal
    return code(lps), VolumeAxes.from_stack(st)


AXIAL = (1, 0, 0, 0, 1, 0)
CORONAL = (1, 0, 0, 0, 0, -1)
SAGITTAL = (0, 1, 0, 0, 0, -1)
FEET_FIRST = (-1, 0, 0, 0, 1, 0)  # rows run to the patient's right; slices towards the feet


def test_axial_volume_shows_the_radiological_convention() -> None:
    volume, axes = acquire(AXIAL)
    r = Reslicer(volume.shape, axes)
    at = tuple(int(i) for i in np.argwhere(volume == code(np.array([2, 3, 4])))[0])
    views = r.planes(volume, at)
    lps = {name: None for name in PLANES}
    for name, view in views.items():
        lps[name] = (view.pixels % 100, view.pixels // 100 % 100, view.pixels // 10000)
    L, P, S = lps["axial"]
    assert (S == 4).all()
    assert L[0, 0] == 0 and L[0, -1] == N - 1  # patient's right on the screen's left
    assert P[0, 0] == 0 and P[-1, 0] == N - 1  # anterior up
    L, P, S = lps["coronal"]
    assert (P == 3).all()
    assert S[0, 0] == N - 1 and S[-1, 0] == 0  # head up
    assert L[0, 0] == 0 and L[0, -1] == N - 1
    L, P, S = lps["sagittal"]
    assert (L == 2).all()
    assert S[0, 0] == N - 1 and S[-1, 0] == 0  # head up
    assert P[0, 0] == 0 and P[0, -1] == N - 1  # anterior on the left


@pytest.mark.parametrize("orientation", [CORONAL, SAGITTAL, FEET_FIRST])
def test_every_acquisition_gives_the_same_planes(orientation: tuple[float, ...]) -> None:
    ref_volume, ref_axes = acquire(AXIAL)
    volume, axes = acquire(orientation)
    ref, other = Reslicer(ref_volume.shape, ref_axes), Reslicer(volume.shape, axes)
    point = code(np.array([1, 4, 2]))
    ref_at = tuple(int(i) for i in np.argwhere(ref_volume == point)[0])
    at = tuple(int(i) for i in np.argwhere(volume == point)[0])
    for name in PLANES:
        want, got = ref.plane(ref_volume, name, ref_at), other.plane(volume, name, at)
        np.testing.assert_array_equal(got.pixels, want.pixels, err_msg=name)
        assert got.index == want.index
        assert other.point_in(name, at) == ref.point_in(name, ref_at)


def test_aspect_from_pixel_and_slice_spacing() -> None:
    r = Reslicer((40, 64, 32), VolumeAxes.axial(2.5, 0.7, 0.8))
    volume = np.zeros(r.shape, np.int16)
    views = r.planes(volume, r.centre())
    assert views["axial"].pixels.shape == (64, 32) and views["axial"].spacing == (0.7, 0.8)
    assert views["coronal"].pixels.shape == (40, 32) and views["coronal"].spacing == (2.5, 0.8)
    assert views["sagittal"].pixels.shape == (40, 64)
    assert views["sagittal"].spacing == (2.5, 0.7)
    assert views["coronal"].aspect == pytest.approx(2.5 / 0.8)


def test_slice_spacing_comes_from_positions_not_thickness() -> None:
    planes = [Plane(4, 4, (0.0, 0.0, 3.0 * k), AXIAL_O, (0.5, 0.5)) for k in range(5)]
    axes = VolumeAxes.from_stack(stack(planes, thickness=1.0))
    assert axes.spacing == pytest.approx((3.0, 0.5, 0.5))
    assert axes.voxel_mm3 == pytest.approx(0.75)


AXIAL_O = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL, FEET_FIRST])
def test_a_click_maps_back_to_the_voxel_drawn_there(orientation: tuple[float, ...]) -> None:
    volume, axes = acquire(orientation)
    r = Reslicer(volume.shape, axes)
    rng = np.random.default_rng(0)
    crosshair = (1, 2, 3)
    for name in PLANES:
        view = r.plane(volume, name, crosshair)
        for row, col in rng.integers(0, N, (10, 2)):
            voxel = r.voxel_at(name, row + 0.2, col - 0.3, crosshair)
            assert volume[voxel] == view.pixels[row, col]
            assert r.point_in(name, voxel) == (row, col)
            # The click stays on the plane: its own axis keeps the crosshair's index.
            assert voxel[r.axis_of(name)] == crosshair[r.axis_of(name)]


def test_clicks_off_the_plane_clip_to_its_edge() -> None:
    r = Reslicer((5, 6, 7), VolumeAxes.axial(1, 1, 1))
    assert r.voxel_at("axial", -3, 99, (2, 2, 2)) == (2, 0, 6)


def test_scroll_moves_along_the_plane_in_screen_order() -> None:
    volume, axes = acquire(FEET_FIRST)  # slices stored towards the feet
    r = Reslicer(volume.shape, axes)
    at = (2, 2, 2)
    up = r.scroll("axial", at, 1)
    assert volume[up] // 10000 == volume[at] // 10000 + 1  # one mm towards the head
    assert r.scroll("axial", at, 100) != at  # clipped, not raised
    assert r.plane(volume, "axial", r.scroll("axial", at, 100)).index == N - 1


def test_label_planes_are_writable_views_of_the_label_volume() -> None:
    r = Reslicer((8, 10, 12), VolumeAxes.axial(2.0, 1.0, 1.0))
    labels = np.zeros(r.shape, np.uint8)
    at = (3, 4, 5)
    coronal = r.plane(labels, "coronal", at)
    assert np.shares_memory(coronal.pixels, labels)
    label_ops.brush(coronal.pixels, 0, 0, 0, 2)  # top left: most superior slice, column 0
    assert labels[7, 4, 0] == 2 and labels.sum() == 2
    sagittal = r.plane(labels, "sagittal", at)
    label_ops.brush(sagittal.pixels, 7, 9, 0, 3)  # bottom right: slice 0, most posterior row
    assert labels[0, 9, 5] == 3


def test_bad_geometry_and_shapes_raise_geometry_errors() -> None:
    with pytest.raises(GeometryError, match="zero spacing"):
        VolumeAxes.axial(0.0, 1.0, 1.0)
    with pytest.raises(GeometryError, match="finite"):
        VolumeAxes(np.full((3, 3), np.nan))
    with pytest.raises(GeometryError, match="parallel"):
        VolumeAxes(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(GeometryError, match="4x4"):
        VolumeAxes.from_affine(np.eye(3))
    r = Reslicer((4, 5, 6), VolumeAxes.axial(1, 1, 1))
    with pytest.raises(GeometryError, match="shape"):
        r.plane(np.zeros((4, 6, 5)), "axial", (0, 0, 0))
    with pytest.raises(GeometryError, match="outside"):
        r.plane(np.zeros((4, 5, 6)), "axial", (4, 0, 0))
    with pytest.raises(GeometryError, match="unknown plane"):
        r.plane(np.zeros((4, 5, 6)), "oblique", (0, 0, 0))  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="slices, rows, columns"):
        Reslicer((4, 5), VolumeAxes.axial(1, 1, 1))
    assert issubclass(GeometryError, ValueError)
