"""Threshold brush, region growing and level tracing on small synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing.errors import EditInputError
from medviewer.editing.history import UndoHistory
from medviewer.editing.smart_tools import (
    grow_region,
    level_trace,
    pick_range,
    region_grow,
    threshold_brush,
    trace_level,
)


def two_rooms() -> np.ndarray:
    """Two flat regions of 100 HU split by a bright wall at column 20 (CT-like int16)."""
    image = np.full((32, 40), 100, np.int16)
    image[:, 20] = 1000
    image[5:10, 5:10] = 103  # within tolerance: part of the left room
    return image


def test_region_growing_stops_at_an_edge() -> None:
    image, mask = two_rooms(), np.zeros((32, 40), np.uint8)
    rect = region_grow(mask, image, [(16, 5)], 2, tolerance=10)
    assert rect == (0, 0, 32, 20)
    assert (mask[:, :20] == 2).all() and not mask[:, 20:].any()


def test_region_growing_uses_the_seeds_mean_and_all_their_regions() -> None:
    image, mask = two_rooms(), np.zeros((32, 40), np.uint8)
    region_grow(mask, image, [(16, 5), (16, 30)], 1, tolerance=0)
    # Mean 100, tolerance 0: the 103 patch is left out; both rooms are in.
    assert mask.sum() == 32 * 39 - 25 and not mask[5:10, 5:10].any()


def test_connectivity_4_or_8() -> None:
    image = np.zeros((5, 5), np.uint8)
    image[1, 1] = image[2, 2] = 200  # touching by a corner only
    assert grow_region(image, [(1, 1)], 10, connectivity=4)[2].sum() == 1
    assert grow_region(image, [(1, 1)], 10, connectivity=8)[2].sum() == 2


def test_a_leak_over_the_bound_paints_nothing() -> None:
    image, mask = two_rooms(), np.zeros((32, 40), np.uint8)
    assert region_grow(mask, image, [(16, 5)], 1, tolerance=10, max_pixels=100) is None
    assert not mask.any()


def test_threshold_brush_paints_only_within_the_range() -> None:
    image = np.zeros((40, 40), np.float32)
    image[:, 20:] = 50.0
    mask = np.zeros((40, 40), np.uint8)
    history = UndoHistory(mask)
    with history.step():
        rect = threshold_brush(mask, image, [(20, 20)], 6, 3, 40, 60, history.record)
    yy, xx = np.mgrid[:40, :40]
    want = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 36) & (xx >= 20)
    np.testing.assert_array_equal(mask == 3, want)
    assert rect == (14, 20, 27, 27)
    history.undo()
    assert not mask.any()


def test_threshold_stroke_follows_the_drag() -> None:
    image, mask = np.full((30, 60), 7, np.uint16), np.zeros((30, 60), np.uint8)
    threshold_brush(mask, image, [(15, 5), (15, 50)], 2, 1, 0, 10)
    assert mask[15, 5:51].all() and mask.sum() > 46 * 5


def test_pick_range_holds_the_clicked_value_and_its_surround() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(40, 5, (64, 64))
    lo, hi = pick_range(image, 30, 30)
    assert lo <= image[30, 30] <= hi
    assert lo < 40 < hi and hi - lo < 60


def test_level_tracing_fills_the_outline_around_the_click() -> None:
    image = np.zeros((40, 40), np.int16)
    image[5:25, 5:25] = 300  # a bright ring ...
    image[10:20, 10:20] = 0  # ... with a dark hole, filled by the trace
    image[5:25, 30:35] = 300  # another bright object, not connected
    mask = np.zeros((40, 40), np.uint8)
    assert level_trace(mask, image, 6, 6, 4) == (5, 5, 25, 25)
    assert (mask[5:25, 5:25] == 4).all() and mask.sum() == 4 * 400
    dark = trace_level(image, 15, 15, above=False)
    assert dark is not None and dark[2].sum() == 100  # the hole alone


def test_bad_input_raises_edit_input_errors() -> None:
    image, mask = two_rooms(), np.zeros((32, 40), np.uint8)
    with pytest.raises(EditInputError, match="seed"):
        region_grow(mask, image, [], 1, 5)
    with pytest.raises(EditInputError, match="differ in shape"):
        region_grow(np.zeros((8, 8), np.uint8), image, [(1, 1)], 1, 5)
    with pytest.raises(EditInputError, match="outside"):
        region_grow(mask, image, [(99, 1)], 1, 5)
    with pytest.raises(EditInputError, match="tolerance"):
        region_grow(mask, image, [(1, 1)], 1, -1)
    with pytest.raises(EditInputError, match="connectivity"):
        grow_region(image, [(1, 1)], 1, connectivity=6)
    with pytest.raises(EditInputError, match="empty"):
        threshold_brush(mask, image, [(1, 1)], 3, 1, 10, 5)
    with pytest.raises(EditInputError, match="uint8"):
        level_trace(mask.astype(np.int32), image, 1, 1, 1)
    with pytest.raises(EditInputError, match="0..255"):
        level_trace(mask, image, 1, 1, 256)
