"""The three-plane and 2x2 layouts use the space: each plane as large as its physical aspect
allows (`layouts.arrange`), the cells applied to the grid, and the layout keys from the one
shortcut table."""

from __future__ import annotations

import pytest

from medviewer.qt import keymap
from medviewer.qt.viewer.layouts import Arrangement, arrange

BRAIN = {"axial": (197.0, 233.0), "coronal": (197.0, 189.0), "sagittal": (233.0, 189.0)}
THIN_CT = {"axial": (350.0, 350.0), "coronal": (350.0, 30.0), "sagittal": (350.0, 30.0)}
THIRDS = Arrangement(
    {"axial": (0, 0, 1, 1), "coronal": (0, 1, 1, 1), "sagittal": (0, 2, 1, 1)},
    (1 / 3, 1 / 3, 1 / 3),
    (1.0,),
)  # the former layout: three equal columns


@pytest.mark.parametrize("planes", [BRAIN, THIN_CT], ids=["brain", "12-slice CT"])
@pytest.mark.parametrize("size", [(560, 800), (900, 800), (1300, 600)])
def test_three_planes_are_shown_larger_than_in_equal_columns(planes, size) -> None:
    best = arrange("mpr", planes, size)
    smallest, covered = best.fit(planes, size)
    old_smallest, old_covered = THIRDS.fit(planes, size)
    assert smallest >= old_smallest and smallest > 0  # every plane shows, none smaller
    if smallest == old_smallest:
        assert covered >= old_covered


def test_a_tall_area_stacks_the_planes_and_a_wide_one_puts_them_in_a_row() -> None:
    tall = arrange("mpr", BRAIN, (460, 800))
    assert len({c[0] for c in tall.cells.values()}) > 1  # not side by side in a narrow area
    assert THIRDS.fit(BRAIN, (460, 800))[0] < 0.8 * tall.fit(BRAIN, (460, 800))[0]
    wide = arrange("mpr", BRAIN, (1300, 600))
    assert {c[0] for c in wide.cells.values()} == {0}
    # The columns follow the planes' widths (sagittal the widest), not thirds.
    assert wide.columns[2] > wide.columns[1]


def test_2x2_splits_by_the_planes_sizes() -> None:
    even = Arrangement(
        {n: c for n, c in arrange("2x2", THIN_CT, (800, 800)).cells.items()},
        (0.5, 0.5),
        (0.5, 0.5),
    )
    best = arrange("2x2", THIN_CT, (800, 800))
    assert best.cells["info"] == (1, 1, 1, 1)
    assert best.fit(THIN_CT, (800, 800)) >= even.fit(THIN_CT, (800, 800))
    with pytest.raises(ValueError, match="unknown layout"):
        arrange("3x3", THIN_CT, (800, 800))


def test_layout_keys_come_from_the_shortcut_table(window) -> None:
    for name in ("single", "mpr", "2x2"):
        action = window.layout_actions[name]
        keys = [k.toString() for k in action.shortcuts()]
        assert keys == list(keymap.shortcut(f"layout_{name}").keys)
        assert keymap.key_text(f"layout_{name}") in action.toolTip()


def test_the_window_places_the_planes_as_arranged(window, qtbot) -> None:
    window.resize(1400, 900)
    window.set_layout("mpr")
    qtbot.waitUntil(lambda: window.volume.review is not None, timeout=10_000)
    host = window.layouts
    qtbot.waitUntil(lambda: host.arrangement is not None and host.planes_mm()["axial"] != (1, 1))
    expected = arrange("mpr", host.planes_mm(), (host.width(), host.height()))
    assert host.arrangement == expected
    for name, (row, col, rspan, cspan) in expected.cells.items():
        index = host.grid.indexOf(host.widgets[name])
        assert host.grid.getItemPosition(index) == (row, col, rspan, cspan)
        assert host.widgets[name].isVisible()
    assert not host.widgets["view"].isVisible() and not host.info.isVisible()
