"""EditSession: the calls a viewer makes; a drag is one undo step; dirty/version for autosave."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing import EditSession
from medviewer.editing.label_ops import union
from tests.editing.test_label_ops import bbox


def test_a_drag_is_one_undo_step_with_a_rect_per_dab() -> None:
    s = EditSession(np.zeros((64, 64), np.uint8))
    s.begin_stroke(value=1, radius=2)
    assert s.in_stroke
    r1 = s.extend_stroke((10, 10))
    r2 = s.extend_stroke((10, 50))  # a fast mouse: the gap is filled; the rows
    # 8 and 12 of the first dab held only column 10, so the new pixels start at column 11
    r3 = s.extend_stroke((10, 50))  # no move: nothing new to repaint
    assert r1 == (8, 8, 13, 13) and r2 == (8, 11, 13, 53) and r3 is None
    assert s.mask[8:13, 10:51].all()
    assert s.end_stroke() == union(r1, r2) and not s.in_stroke
    assert s.history.undo_steps == 1 and s.version == 2
    assert s.undo() == union(r1, r2) and not s.mask.any()
    assert not s.can_undo and s.can_redo


def test_calls_return_the_rect_they_changed_and_undo_in_order() -> None:
    image = np.zeros((32, 32))
    image[:, 16:] = 5.0
    proposal = np.zeros((32, 32), np.uint8)
    proposal[20:30, 2:8] = 2
    s = EditSession(np.zeros((32, 32), np.uint8), proposal)
    snapshots = [s.mask.copy()]
    calls = [
        lambda: s.paint([(5, 5), (5, 20)], 1, 1),
        lambda: s.erase([(5, 10)], 2),
        lambda: s.polygon([(10, 10), (10, 14), (14, 14)], 3),
        lambda: s.fill(image, 0, 31, 4, 0),
        lambda: s.accept_proposal(),
        lambda: s.paint([(0, 0)], 0, 1),
        lambda: s.remove_islands(5),
        lambda: s.clear(),
    ]
    for call in calls:
        before = s.mask.copy()
        assert call() == bbox(before, s.mask)
        snapshots.append(s.mask.copy())
    assert s.version == len(calls) and s.history.undo_steps == len(calls)
    for k in range(len(calls) - 1, -1, -1):
        rect = s.undo()
        assert np.array_equal(s.mask, snapshots[k]) and rect == bbox(snapshots[k + 1], s.mask)
    for k in range(1, len(calls) + 1):
        s.redo()
        assert np.array_equal(s.mask, snapshots[k])


def test_calls_that_change_nothing_are_not_steps_and_do_not_bump_the_version() -> None:
    s = EditSession(np.zeros((16, 16), np.uint8))
    assert s.erase([(5, 5)], 3) is None and s.clear() is None and s.remove_islands(10) is None
    s.begin_stroke(0, 4)
    assert s.extend_stroke((8, 8)) is None and s.end_stroke() is None
    assert s.version == 0 and not s.dirty and not s.can_undo


def test_dirty_and_version_for_autosave() -> None:
    s = EditSession(np.zeros((16, 16), np.uint8))
    assert s.version == 0 and not s.dirty
    s.paint([(3, 3)], 1, 1)
    assert s.version == 1 and s.dirty
    saved = s.version  # autosave copies the mask at version 1 and starts writing
    s.paint([(9, 9)], 1, 2)  # the clinician keeps painting while it writes
    s.mark_saved(saved)
    assert s.saved_version == 1 and s.dirty  # version 2 is not on disk yet
    s.mark_saved(s.version)
    assert not s.dirty
    s.mark_saved(1)  # a late report of the older save does not make it dirty again
    assert not s.dirty and s.saved_version == 2
    s.undo()
    assert s.version == 3 and s.dirty  # undo changes pixels: save again
    with pytest.raises(ValueError, match="newer"):
        s.mark_saved(4)


def test_undo_during_a_drag_ends_the_drag_and_undoes_it() -> None:
    s = EditSession(np.zeros((16, 16), np.uint8))
    s.paint([(2, 2)], 1, 1)
    first = s.mask.copy()
    s.begin_stroke(2, 1)
    s.extend_stroke((8, 8))
    assert s.can_undo and not s.can_redo
    s.undo()
    assert not s.in_stroke and np.array_equal(s.mask, first)
    assert s.can_redo


def test_other_calls_and_a_second_press_end_an_open_drag() -> None:
    s = EditSession(np.zeros((16, 16), np.uint8))
    s.begin_stroke(1, 1)
    s.extend_stroke((3, 3))
    s.begin_stroke(2, 1)  # the release was lost: the first drag is still its own step
    s.extend_stroke((10, 10))
    s.paint([(14, 14)], 0, 3)
    assert s.history.undo_steps == 3 and not s.in_stroke


def test_a_new_edit_clears_redo() -> None:
    s = EditSession(np.zeros((16, 16), np.uint8))
    s.paint([(3, 3)], 1, 1)
    s.undo()
    assert s.can_redo
    s.paint([(9, 9)], 1, 1)
    assert not s.can_redo and s.redo() is None


def test_misuse_raises_or_is_ignored_as_a_viewer_needs() -> None:
    s = EditSession(np.zeros((8, 8), np.uint8))
    assert s.end_stroke() is None  # a stray release
    with pytest.raises(RuntimeError, match="begin_stroke"):
        s.extend_stroke((1, 1))
    with pytest.raises(ValueError, match="0..255"):
        s.begin_stroke(300, 1)
    with pytest.raises(ValueError, match="radius"):
        s.begin_stroke(1, -2)
    assert not s.in_stroke
    with pytest.raises(ValueError, match="no AI proposal"):
        s.accept_proposal()
    with pytest.raises(ValueError, match="proposal"):
        s.proposal = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        EditSession(np.zeros((8, 8), np.float32))


def test_random_drags_and_calls_undo_and_redo_exactly() -> None:
    rng = np.random.default_rng(11)
    shape = (40, 50)
    image = rng.integers(0, 3, shape).astype(np.float64)
    s = EditSession(np.zeros(shape, np.uint8), rng.integers(0, 3, shape).astype(np.uint8))
    states, cursor = [s.mask.copy()], 0
    for _ in range(300):
        action = rng.choice(["drag", "fill", "polygon", "undo", "redo"])
        pt = (float(rng.uniform(-3, 43)), float(rng.uniform(-3, 53)))
        version = s.version
        if action == "undo":
            changed = s.undo() is not None
            cursor -= changed
        elif action == "redo":
            changed = s.redo() is not None
            cursor += changed
        else:
            if action == "drag":
                s.begin_stroke(int(rng.integers(0, 4)), float(rng.uniform(0, 4)))
                for _ in range(rng.integers(1, 6)):
                    s.extend_stroke((pt[0] + rng.normal(0, 8), pt[1] + rng.normal(0, 8)))
                s.end_stroke()
            elif action == "fill":
                s.fill(image, *pt, int(rng.integers(0, 4)), float(rng.integers(0, 2)))
            else:
                s.polygon([pt, (pt[0] + 9, pt[1]), (pt[0], pt[1] + 9)], int(rng.integers(0, 4)))
            changed = not np.array_equal(s.mask, states[cursor])
            if changed:
                states, cursor = states[: cursor + 1] + [s.mask.copy()], cursor + 1
        assert np.array_equal(s.mask, states[cursor])
        assert (s.version > version) == changed and s.dirty == (s.version > 0)
        assert s.can_undo == (cursor > 0) and s.can_redo == (cursor < len(states) - 1)
