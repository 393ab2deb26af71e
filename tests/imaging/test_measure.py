"""Measurements: ruler, ROI statistics in HU, class areas and volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medviewer.imaging import ImageLoader, scan
from medviewer.imaging.display import DisplayInfo, Image
from medviewer.imaging.measure import (
    NO_SPACING,
    MeasureError,
    class_areas,
    class_volumes,
    roi_mask,
    roi_stats,
    ruler,
)
from medviewer.imaging.reslice import VolumeAxes
from tests.imaging.helpers import write_ct_slice


def test_ruler_in_mm_with_anisotropic_spacing() -> None:
    length = ruler((0, 0), (3, 4), (2.0, 0.5))  # 6 mm down, 2 mm across
    assert length.unit == "mm" and length.value == pytest.approx(np.hypot(6, 2))
    assert ruler((1, 1), (1, 11), (2.0, 0.5)).value == pytest.approx(5.0)


def test_ruler_without_spacing_is_in_pixels_and_says_so() -> None:
    length = ruler((0, 0), (3, 4), None)
    assert (length.value, length.unit, length.note) == (5.0, "px", NO_SPACING)


def test_hu_statistics_on_a_ct_with_rescale(tmp_path: Path) -> None:
    stored = np.full((16, 16), 1024, np.int16)  # 0 HU: water
    stored[4:12, 4:12] = 1064  # 40 HU
    stored[4, 4] = 1124  # 100 HU
    write_ct_slice(tmp_path / "ct.dcm", stored, series_uid="1.2.3", spacing=(0.5, 0.8))
    catalog = scan([tmp_path])
    image = ImageLoader().image(catalog.series()[0].frames[0])
    stats = roi_stats(image, (4, 4, 11, 11), "rectangle", modality="CT")
    assert stats.unit == "HU" and stats.pixels == 64
    assert stats.min == 40 and stats.max == 100
    assert stats.mean == pytest.approx((63 * 40 + 100) / 64)
    assert stats.sd == pytest.approx(np.std([40] * 63 + [100]))
    assert stats.area == pytest.approx(64 * 0.4) and stats.area_unit == "mm2"


def test_ellipse_roi_counts_pixel_centres_inside() -> None:
    image = Image(np.arange(100, dtype=np.uint16).reshape(10, 10), DisplayInfo(slope=2.0))
    stats = roi_stats(image, (7, 7, 3, 3), "ellipse")  # corners in any order
    y0, x0, inside = roi_mask((10, 10), (3, 3, 7, 7), "ellipse")
    assert stats.pixels == int(inside.sum()) == 13  # radius 2 around (5, 5)
    assert stats.mean == pytest.approx(2 * 55) and stats.unit == ""
    assert stats.area_unit == "px" and stats.note == NO_SPACING


def test_class_areas_on_a_slice() -> None:
    labels = np.zeros((10, 10), np.uint8)
    labels[:2, :5] = 1
    labels[5, 5] = 3
    areas, note = class_areas(labels, (0.5, 2.0))
    assert areas == {1: 10.0, 3: 1.0} and note == ""
    assert class_areas(labels, None) == ({1: 10.0, 3: 1.0}, NO_SPACING)


def test_volume_of_a_cube_is_exact() -> None:
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[1:11, 1:11, 1:11] = 2
    assert class_volumes(labels, VolumeAxes.axial(3.0, 2.0, 1.0)) == {2: pytest.approx(6.0)}


def test_volume_of_a_sphere_within_two_percent() -> None:
    # A 20 mm radius sphere on a 2.5 x 0.8 x 0.8 mm grid: 33.51 mL.
    axes = VolumeAxes.axial(2.5, 0.8, 0.8)
    s, r, c = np.ogrid[:20, :60, :60]
    d2 = ((s - 9.5) * 2.5) ** 2 + ((r - 29.5) * 0.8) ** 2 + ((c - 29.5) * 0.8) ** 2
    labels = (d2 <= 400).astype(np.uint8)
    ml = class_volumes(labels, axes)[1]
    assert ml == pytest.approx(4 / 3 * np.pi * 20**3 / 1000, rel=0.02)


def test_a_tilted_grid_counts_its_true_voxel_volume() -> None:
    tilt = np.radians(20)
    steps = np.array([[0, 0, 0.5], [2 * np.sin(tilt), 0.5, 0], [2 * np.cos(tilt), 0, 0]])
    # Slices 2 mm apart along a tilted line, but only 2 cos(20 deg) mm apart along the normal.
    assert VolumeAxes(steps).voxel_mm3 == pytest.approx(0.25 * 2 * np.cos(tilt))


def test_bad_input_raises_measure_errors() -> None:
    with pytest.raises(MeasureError, match="spacing"):
        ruler((0, 0), (1, 1), (0.0, 1.0))
    with pytest.raises(MeasureError, match="finite"):
        ruler((0, 0), (np.nan, 1), None)
    image = Image(np.zeros((8, 8), np.int16))
    with pytest.raises(MeasureError, match="no pixel"):
        roi_stats(image, (20, 20, 30, 30))
    with pytest.raises(MeasureError, match="ellipse or a rectangle"):
        roi_stats(image, (0, 0, 3, 3), "circle")  # type: ignore[arg-type]
    with pytest.raises(MeasureError, match="greyscale"):
        roi_stats(Image(np.zeros((8, 8, 3), np.uint8)), (0, 0, 3, 3))
    with pytest.raises(MeasureError, match="uint8"):
        class_areas(np.zeros((4, 4), np.int32), None)
    with pytest.raises(MeasureError, match="3D"):
        class_volumes(np.zeros((4, 4), np.uint8), VolumeAxes.axial(1, 1, 1))
    assert issubclass(MeasureError, ValueError)
