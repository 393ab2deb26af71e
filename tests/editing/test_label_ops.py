"""Label-map operations on small arrays: exact pixels and exact changed rectangles."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing import label_ops
from medviewer.editing.label_ops import (
    accept,
    brush,
    clear,
    fill_polygon,
    flood_fill,
    remove_islands,
    stroke,
)


def bbox(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int, int] | None:
    """The half-open bounding box of the pixels where a and b differ."""
    ys, xs = np.nonzero(a != b)
    if ys.size == 0:
        return None
    return (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)


def disk(shape: tuple[int, int], y: float, x: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


# -- brush ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("radius", "area"), [(0, 1), (1, 5), (2, 13), (3, 29), (5, 81), (10, 317)])
def test_brush_is_the_disk_of_pixel_centres_within_radius(radius: int, area: int) -> None:
    m = np.zeros((31, 31), np.uint8)
    rect = brush(m, 15, 15, radius, 3)
    assert int((m == 3).sum()) == area  # Gauss's circle numbers
    assert np.array_equal(m == 3, disk(m.shape, 15, 15, radius))
    assert rect == (15 - radius, 15 - radius, 16 + radius, 16 + radius)


def test_brush_shape_is_symmetric_and_plus_shaped_at_radius_one() -> None:
    m = np.zeros((5, 5), np.uint8)
    brush(m, 2, 2, 1, 1)
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 2] = expected[2, 1:4] = 1
    assert np.array_equal(m, expected)


def test_brush_overwrites_other_classes_and_reports_only_real_changes() -> None:
    m = np.zeros((20, 20), np.uint8)
    m[10, :] = 2
    rect = brush(m, 10, 10, 2, 2)  # on row 10 the disk is class 2 already
    assert rect == (8, 9, 13, 12)  # row 10 is unchanged, so columns 8 and 12 are not in it
    assert brush(m, 10, 10, 2, 2) is None  # painting a class over itself changes nothing


def test_brush_clips_at_borders_and_accepts_negative_coordinates() -> None:
    m = np.zeros((8, 8), np.uint8)
    assert brush(m, -1, -1, 2, 4) == (0, 0, 1, 1)  # only (0, 0) is within 2 of (-1, -1)
    assert m[0, 0] == 4 and m.sum() == 4
    m[:] = 0
    assert brush(m, 7, 7, 1, 1) == (6, 6, 8, 8)
    assert np.array_equal(np.argwhere(m), [[6, 7], [7, 6], [7, 7]])
    assert brush(m, -10, 3, 2, 1) is None and brush(m, 3, 50, 5, 1) is None


def test_brush_with_sub_pixel_centre() -> None:
    m = np.zeros((10, 10), np.uint8)
    brush(m, 4.5, 4.5, 1, 1)  # the four pixels around the centre, each 0.707 away
    assert np.array_equal(np.argwhere(m), [[4, 4], [4, 5], [5, 4], [5, 5]])


# -- stroke -----------------------------------------------------------------------------------


def test_stroke_between_far_points_leaves_no_gap() -> None:
    m = np.zeros((9, 120), np.uint8)
    rect = stroke(m, [(4, 2), (4, 110)], 2, 1)  # one mouse event 108 px after the last
    expected = disk(m.shape, 4, 2, 2) | disk(m.shape, 4, 110, 2)
    expected[2:7, 2:111] = True  # a band 2r+1 = 5 px thick with round caps
    assert np.array_equal(m == 1, expected)
    assert rect == (2, 0, 7, 113)


@pytest.mark.parametrize(("a", "b", "r"), [((3, 5), (57, 41), 3), ((60, 2), (1, 63), 1.5)])
def test_diagonal_stroke_contains_every_dab_on_its_path(a, b, r) -> None:
    m = np.zeros((64, 64), np.uint8)
    stroke(m, [a, b], r, 1)
    on_path = np.zeros_like(m, bool)
    near_path = np.zeros_like(m, bool)
    for t in np.linspace(0, 1, 400):
        y, x = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        on_path |= disk(m.shape, y, x, r)
        near_path |= disk(m.shape, y, x, r + 0.5)
    painted = m == 1
    assert not (on_path & ~painted).any()  # no gap anywhere along the path
    assert not (painted & ~near_path).any()  # and no stray pixels


def test_polyline_stroke_and_eraser() -> None:
    m = np.zeros((40, 40), np.uint8)
    rect = stroke(m, [(5, 5), (5, 30), (30, 30)], 1, 2)
    assert m[5, 5:31].all() and m[5:31, 30].all() and rect == bbox(m, np.zeros_like(m))
    before = m.copy()
    rect = stroke(m, [(5, 10), (5, 20)], 1, 0)  # the eraser is value 0
    assert not m[4:7, 10:21].any() and rect == bbox(before, m) == (4, 9, 7, 22)


def test_stroke_partly_outside_the_map() -> None:
    m = np.zeros((10, 10), np.uint8)
    rect = stroke(m, [(-20, -20), (20, 20)], 0, 1)
    assert np.array_equal(m, np.eye(10, dtype=np.uint8)) and rect == (0, 0, 10, 10)


def test_invalid_inputs_raise() -> None:
    m = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="0..255"):
        brush(m, 1, 1, 1, 256)
    with pytest.raises(ValueError, match="uint8"):
        brush(np.zeros((4, 4), np.int32), 1, 1, 1, 1)
    with pytest.raises(ValueError, match="radius"):
        brush(m, 1, 1, -1, 1)
    with pytest.raises(ValueError, match="finite"):
        stroke(m, [(1, 1), (float("nan"), 2)], 1, 1)
    assert stroke(m, [], 1, 1) is None


# -- polygon ----------------------------------------------------------------------------------


def test_polygon_fills_inside_and_outline() -> None:
    m = np.zeros((10, 10), np.uint8)
    rect = fill_polygon(m, [(2, 2), (2, 6), (6, 6), (6, 2)], 1)
    expected = np.zeros_like(m)
    expected[2:7, 2:7] = 1
    assert np.array_equal(m, expected) and rect == (2, 2, 7, 7)


def test_triangle_lasso_and_clipping() -> None:
    m = np.zeros((10, 10), np.uint8)
    rect = fill_polygon(m, [(0, 0), (0, 9), (9, 0)], 5)
    yy, xx = np.mgrid[:10, :10]
    assert np.array_equal(m == 5, yy + xx <= 9) and rect == (0, 0, 10, 10)
    m[:] = 0
    rect = fill_polygon(m, [(-5, -5), (-5, 3), (3, 3), (3, -5)], 1)
    assert np.array_equal(np.argwhere(m), np.argwhere(np.ones((4, 4)))) and rect == (0, 0, 4, 4)


def test_degenerate_or_outside_polygons_change_nothing() -> None:
    m = np.zeros((10, 10), np.uint8)
    assert fill_polygon(m, [(1, 1), (5, 5)], 1) is None
    assert fill_polygon(m, [(20, 20), (20, 30), (30, 30)], 1) is None
    assert not m.any()


# -- flood fill -------------------------------------------------------------------------------


def _regions() -> np.ndarray:
    img = np.zeros((12, 12))
    img[:, 6:] = 100.0
    img[3:5, 1:3] = 100.0  # a separate 100-valued patch inside the left half
    return img


def test_flood_fill_tolerance_zero_fills_the_flat_region_exactly() -> None:
    img = _regions()
    m = np.zeros(img.shape, np.uint8)
    rect = flood_fill(m, img, 0, 11, 2, 0)
    assert np.array_equal(m == 2, np.pad(np.ones((12, 6), bool), ((0, 0), (6, 0))))
    assert rect == (0, 6, 12, 12)  # the patch at [3:5, 1:3] is not connected: untouched
    m[:] = 0
    flood_fill(m, img, 0, 0, 1, 0)
    assert (m == 1).sum() == 12 * 6 - 4 and not m[3:5, 1:3].any()


def test_flood_fill_is_four_connected() -> None:
    img = np.ones((5, 5))
    img[np.arange(5), np.arange(5)] = 0.0  # a diagonal line of zeros
    m = np.zeros(img.shape, np.uint8)
    flood_fill(m, img, 0, 0, 1, 0)
    assert (m == 1).sum() == 1  # a diagonal neighbour is not a neighbour


def test_flood_fill_tolerance_is_plus_minus_around_the_seed() -> None:
    img = np.tile(np.arange(10, dtype=np.float64), (3, 1))  # a ramp 0..9 along x
    m = np.zeros(img.shape, np.uint8)
    rect = flood_fill(m, img, 1, 5, 1, 2)
    assert np.array_equal(np.flatnonzero(m[0]), [3, 4, 5, 6, 7]) and rect == (0, 3, 3, 8)
    m[:] = 0
    flood_fill(m, img + 0.1, 1, 5, 1, 0.2)  # exact in float64, no float32 rounding
    assert np.array_equal(np.flatnonzero(m[0]), [5])


def test_flood_fill_on_unsigned_image_does_not_wrap() -> None:
    img = np.array([[0, 1, 65535]], np.uint16)
    m = np.zeros(img.shape, np.uint8)
    flood_fill(m, img, 0, 0, 1, 1)
    assert m.tolist() == [[1, 1, 0]]


def test_flood_fill_outside_or_nan_seed_changes_nothing() -> None:
    img = np.zeros((4, 4))
    img[0, 0] = np.nan
    m = np.zeros(img.shape, np.uint8)
    assert flood_fill(m, img, 0, 0, 1, 5) is None
    assert flood_fill(m, img, -1, 2, 1, 5) is None and flood_fill(m, img, 2, 4, 1, 5) is None
    assert flood_fill(m, img, 3, 3, 1, 5) == (0, 0, 4, 4) and m[0, 0] == 0  # NaN never matches
    with pytest.raises(ValueError, match="shape"):
        flood_fill(m, np.zeros((3, 4)), 0, 0, 1, 0)


# -- islands, accept, clear -------------------------------------------------------------------


def test_remove_islands_per_class_and_reports_their_extent() -> None:
    m = np.zeros((30, 30), np.uint8)
    m[2:12, 2:12] = 1  # 100 px: kept
    m[20:22, 20:22] = 1  # 4 px island
    m[28, 3:6] = 2  # 3 px island of another class
    m[15:25, 2:10] = 2  # 80 px: kept
    before = m.copy()
    rect = remove_islands(m, 10)
    assert not m[20:22, 20:22].any() and not m[28, 3:6].any()
    assert (m == 1).sum() == 100 and (m == 2).sum() == 80
    assert rect == bbox(before, m) == (20, 3, 29, 22)
    assert remove_islands(m, 10) is None and remove_islands(m, 1) is None


def test_accept_copies_the_proposal_and_clear_empties() -> None:
    m = np.zeros((10, 10), np.uint8)
    proposal = np.zeros_like(m)
    proposal[3:5, 6:8] = 2
    assert accept(m, proposal) == (3, 6, 5, 8) and np.array_equal(m, proposal)
    assert accept(m, proposal) is None
    assert clear(m) == (3, 6, 5, 8) and not m.any()
    assert clear(m) is None
    with pytest.raises(ValueError, match="shape"):
        accept(m, np.zeros((5, 5), np.uint8))


# -- properties over random operations ---------------------------------------------------------


def test_before_write_sees_the_original_pixels_and_exactly_the_changes() -> None:
    m = np.zeros((20, 20), np.uint8)
    m[5:8, 5:8] = 1
    original = m.copy()
    seen = []

    def before_write(rect, changed) -> None:
        y0, x0, y1, x1 = rect
        assert changed.shape == (y1 - y0, x1 - x0)
        seen.append((rect, m[y0:y1, x0:x1].copy(), changed.copy()))

    rect = brush(m, 6, 6, 3, 1, before_write)
    ((r, pixels, changed),) = seen
    assert r == rect and np.array_equal(pixels, original[r[0] : r[2], r[1] : r[3]])
    assert np.array_equal(changed, (original != m)[r[0] : r[2], r[1] : r[3]])


def random_op(rng, m, image, proposal, before_write=None):
    """One random edit with random arguments, some partly or fully outside the map."""
    h, w = m.shape
    value = int(rng.integers(0, 4))
    kinds = ["brush", "stroke", "polygon", "fill", "islands", "accept", "clear"]
    kind = rng.choice(kinds, p=[0.25, 0.3, 0.15, 0.15, 0.05, 0.05, 0.05])

    def pt() -> tuple[float, float]:
        return (float(rng.uniform(-5, h + 5)), float(rng.uniform(-5, w + 5)))

    if kind == "brush":
        return brush(m, *pt(), float(rng.uniform(0, 6)), value, before_write)
    if kind == "stroke":
        points = [pt() for _ in range(rng.integers(1, 5))]
        return stroke(m, points, rng.uniform(0, 4), value, before_write)
    if kind == "polygon":
        return fill_polygon(m, [pt() for _ in range(rng.integers(3, 7))], value, before_write)
    if kind == "fill":
        return flood_fill(m, image, *pt(), value, float(rng.integers(0, 3)), before_write)
    if kind == "islands":
        return remove_islands(m, int(rng.integers(1, 30)), before_write)
    if kind == "accept":
        return accept(m, proposal, before_write)
    return clear(m, before_write)


def test_every_operation_returns_the_exact_bounding_box_of_its_changes() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4, (37, 53)).astype(np.float64)
    proposal = (rng.random((37, 53)) < 0.3).astype(np.uint8)
    m = np.zeros((37, 53), np.uint8)
    for _ in range(400):
        before = m.copy()
        assert random_op(rng, m, image, proposal) == bbox(before, m)


def test_union_of_rects_treats_none_as_empty() -> None:
    assert label_ops.union(None, (1, 2, 3, 4)) == (1, 2, 3, 4)
    assert label_ops.union((0, 5, 2, 6), (1, 2, 3, 4)) == (0, 2, 3, 6)
