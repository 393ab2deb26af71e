"""A stroke drawn on a plane goes back into the label volume as one undo step."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing import label_ops
from medviewer.editing.history import UndoHistory
from medviewer.editing.plane_edits import voxel_indices, write_plane
from medviewer.editing.volume_edits import stacked
from medviewer.imaging.reslice import PLANES, Reslicer, VolumeAxes

# A volume stored with its slices descending (feet last) and rows flipped: planes are flipped
# and transposed views, so a wrong mapping back would land elsewhere.
AXES = VolumeAxes(np.array([[0, 0, 0.8], [0, -0.7, 0], [-2.5, 0, 0]], float))
SHAPE = (6, 10, 12)


@pytest.mark.parametrize("plane", PLANES)
def test_stroke_on_a_plane_lands_where_the_plane_shows_it(plane: str) -> None:
    r = Reslicer(SHAPE, AXES)
    labels = np.zeros(SHAPE, np.uint8)
    labels[2, 3, 4] = 7  # erased by the stroke below if it crosses it
    crosshair = (2, 3, 4)
    drawn = np.array(r.plane(labels, plane, crosshair).pixels)
    h, w = drawn.shape
    label_ops.stroke(drawn, [(0, 0), (h - 1, w - 1)], 1, 3)
    row, column = r.point_in(plane, crosshair)
    drawn[row, column] = 0  # the eraser works too
    expected = labels.copy()
    r.plane(expected, plane, crosshair).pixels[...] = drawn  # the view writes through
    history = UndoHistory(stacked(labels))
    with history.step():
        box = write_plane(labels, r, plane, crosshair, drawn, history.record)
    assert np.array_equal(labels, expected)
    assert box is not None and history.undo_steps == 1
    changed = np.argwhere(labels != 0)
    assert box[0] <= changed[:, 0].min() and changed[:, 0].max() < box[3]
    history.undo()
    assert (labels != 0).sum() == 1 and labels[2, 3, 4] == 7


def test_nothing_drawn_is_no_step_and_a_wrong_shape_is_refused() -> None:
    r = Reslicer(SHAPE, AXES)
    labels = np.zeros(SHAPE, np.uint8)
    same = np.array(r.plane(labels, "coronal", (0, 0, 0)).pixels)
    assert write_plane(labels, r, "coronal", (0, 0, 0), same) is None
    with pytest.raises(ValueError, match="coronal plane is"):
        write_plane(labels, r, "coronal", (0, 0, 0), same.T)


def test_voxel_indices_match_voxel_at() -> None:
    r = Reslicer(SHAPE, AXES)
    s, y, x = voxel_indices(r, "sagittal", (1, 2, 3))
    for row, column in ((0, 0), (4, 7), (5, 9)):
        assert (s[row, column], y[row, column], x[row, column]) == r.voxel_at(
            "sagittal", row, column, (1, 2, 3)
        )
