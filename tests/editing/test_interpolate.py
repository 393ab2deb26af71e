"""Fill between slices: what is filled, where, and that accepting it is one undo step."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing.errors import EditInputError
from medviewer.editing.history import UndoHistory
from medviewer.editing.interpolate import fill_between, key_slices
from medviewer.editing.volume_edits import VolumeChange, stacked


def disc(shape: tuple[int, int], y: float, x: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def volume_with(*drawn: tuple[int, int, float, float, float]) -> np.ndarray:
    """(class, slice, y, x, r) discs on a 30x48x48 label volume."""
    labels = np.zeros((30, 48, 48), np.uint8)
    for cls, k, y, x, r in drawn:
        labels[k][disc((48, 48), y, x, r)] = cls
    return labels


def filled(labels: np.ndarray, change: VolumeChange | None) -> np.ndarray:
    out = labels.copy()
    assert change is not None
    change.apply(out)
    return out


def test_a_class_on_slices_10_and_20_fills_11_to_19_and_nothing_else() -> None:
    labels = volume_with((1, 10, 20, 20, 8), (1, 20, 20, 20, 8))
    change = fill_between(labels)
    assert change is not None and change.slices == list(range(11, 20))
    out = filled(labels, change)
    for k in range(30):
        want = disc((48, 48), 20, 20, 8) if 10 <= k <= 20 else np.zeros((48, 48), bool)
        np.testing.assert_array_equal(out[k] == 1, want, err_msg=f"slice {k}")
    assert set(np.unique(out)) == {0, 1}


def test_a_growing_shape_grows_step_by_step() -> None:
    labels = volume_with((1, 10, 24, 24, 4), (1, 20, 24, 24, 14))
    out = filled(labels, fill_between(labels))
    areas = [int((out[k] == 1).sum()) for k in range(10, 21)]
    assert areas == sorted(areas) and len(set(areas)) > 5
    assert abs(areas[5] - np.pi * 9**2) < 0.15 * np.pi * 9**2  # halfway: radius about 9


def test_a_drifting_shape_is_carried_along_not_lost_midway() -> None:
    # No overlap between the two discs: a plain distance blend would leave the middle empty.
    labels = volume_with((1, 10, 10, 10, 5), (1, 20, 36, 36, 5))
    out = filled(labels, fill_between(labels))
    ys, xs = np.nonzero(out[15] == 1)
    assert ys.size > 0.7 * np.pi * 25
    assert abs(ys.mean() - 23) < 1.5 and abs(xs.mean() - 23) < 1.5


def test_classes_are_independent_and_drawn_pixels_are_never_overwritten() -> None:
    labels = volume_with(
        (1, 10, 20, 20, 8),
        (1, 20, 20, 20, 8),
        (2, 3, 35, 35, 5),
        (2, 6, 35, 35, 5),
        (3, 15, 20, 20, 3),  # another class drawn inside class 1's path
    )
    out = filled(labels, fill_between(labels))
    assert np.all(out[15][disc((48, 48), 20, 20, 3)] == 3)
    assert [k for k in range(30) if (out[k] == 2).any()] == [3, 4, 5, 6]
    assert [k for k in range(30) if (out[k] == 1).any()] == list(range(10, 21))
    assert [k for k in range(30) if (out[k] == 3).any()] == [15]  # one slice: nothing between


def test_only_chosen_classes_and_drawn_slices() -> None:
    labels = volume_with((1, 10, 20, 20, 8), (1, 20, 20, 20, 8), (2, 3, 35, 35, 5))
    labels[6][disc((48, 48), 35, 35, 5)] = 2
    change = fill_between(labels, classes=[2])
    assert change is not None and change.slices == [4, 5]
    # Slice 20 not among the drawn: class 1 has one key slice, so nothing to fill for it.
    assert key_slices(labels, drawn=[3, 6, 10])[1] == [10]
    only = fill_between(labels, drawn=[3, 6, 10])
    assert only is not None and only.slices == [4, 5]


def test_slices_drawn_in_another_plane_interpolate_along_its_axis() -> None:
    labels = np.zeros((20, 30, 40), np.uint8)
    labels[5:15, 10:20, 8] = 1  # sagittal slices 8 and 18 (axis 2)
    labels[5:15, 10:20, 18] = 1
    change = fill_between(labels, axis=2, spacing=(2.5, 0.7))
    assert change is not None
    out = filled(labels, change)
    want = np.zeros_like(labels)
    want[5:15, 10:20, 8:19] = 1
    np.testing.assert_array_equal(out, want)


def test_accepting_is_one_undo_step() -> None:
    labels = volume_with((1, 10, 20, 20, 8), (1, 20, 20, 20, 6))
    before = labels.copy()
    change = fill_between(labels)
    assert change is not None
    preview = np.zeros_like(labels)
    change.paint_into(preview)
    history = UndoHistory(stacked(labels))
    with history.step():
        box = change.apply(labels, history.record)
    assert box is not None and box[0] == 11 and box[3] == 20
    np.testing.assert_array_equal(labels != before, preview != 0)
    assert history.undo_steps == 1
    history.undo()
    np.testing.assert_array_equal(labels, before)
    history.redo()
    assert (labels != before).sum() == change.voxels


def test_nothing_to_fill_is_none() -> None:
    assert fill_between(np.zeros((5, 8, 8), np.uint8)) is None
    assert fill_between(volume_with((1, 10, 20, 20, 8), (1, 11, 20, 20, 8))) is None


def test_bad_input_raises_edit_input_errors() -> None:
    with pytest.raises(EditInputError, match="uint8"):
        fill_between(np.zeros((8, 8), np.uint8))
    with pytest.raises(EditInputError, match="uint8"):
        fill_between(np.zeros((4, 8, 8), np.int16))
    with pytest.raises(EditInputError, match="axes"):
        fill_between(np.zeros((4, 8, 8), np.uint8), axis=3)
    with pytest.raises(EditInputError, match="spacing"):
        fill_between(np.zeros((4, 8, 8), np.uint8), spacing=(0.0, 1.0))
    with pytest.raises(EditInputError, match="outside"):
        fill_between(np.zeros((4, 8, 8), np.uint8), drawn=[9])
    change = VolumeChange((3, 0, 0), np.ones((2, 8, 8), np.uint8))
    with pytest.raises(EditInputError, match="outside"):
        change.apply(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(EditInputError, match="contiguous"):
        stacked(np.zeros((4, 8, 8), np.uint8).transpose(1, 0, 2))
