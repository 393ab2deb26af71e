"""Undo history: exact undo/redo over random edits, one step per action, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.editing.history import UndoHistory
from medviewer.editing.label_ops import brush, clear, stroke
from tests.editing.test_label_ops import bbox, random_op


def test_one_step_undoes_and_redoes_exactly() -> None:
    m = np.zeros((100, 70), np.uint8)  # not a multiple of the tile: edge tiles are smaller
    h = UndoHistory(m, tile=16)
    with h.step():
        h.record(brush(m, 95, 65, 8, 1, h.record))
    after = m.copy()
    assert h.undo() == bbox(after, np.zeros_like(m)) and not m.any()
    assert h.redo() == bbox(after, np.zeros_like(m)) and np.array_equal(m, after)
    assert h.redo() is None and h.undo() is not None and h.undo() is None


def test_the_first_copy_of_a_tile_in_a_step_is_the_original() -> None:
    m = np.zeros((32, 32), np.uint8)
    m[4, 4] = 9
    original = m.copy()
    h = UndoHistory(m, tile=8)
    with h.step():  # three edits of the same tiles make one step
        brush(m, 4, 4, 3, 1, h.record)
        brush(m, 4, 4, 3, 2, h.record)
        stroke(m, [(0, 0), (20, 20)], 2, 3, h.record)
    assert h.undo_steps == 1
    h.undo()
    assert np.array_equal(m, original)


def test_random_mixed_edits_undo_and_redo_exactly() -> None:
    """A model of the history (a list of snapshots and a cursor) against the real one."""
    rng = np.random.default_rng(7)
    shape = (45, 61)
    image = rng.integers(0, 4, shape).astype(np.float64)
    proposal = rng.integers(0, 3, shape).astype(np.uint8)
    m = np.zeros(shape, np.uint8)
    h = UndoHistory(m, tile=8, max_steps=1000, max_bytes=2**30)
    states, cursor = [m.copy()], 0
    for _ in range(600):
        action = rng.choice(["edit", "undo", "redo"], p=[0.6, 0.25, 0.15])
        if action == "undo":
            rect = h.undo()
            assert (rect is None) == (cursor == 0)
            if rect is not None:
                changed = bbox(states[cursor], states[cursor - 1])
                cursor -= 1
                assert changed is None or _covers(rect, changed)
        elif action == "redo":
            rect = h.redo()
            assert (rect is None) == (cursor == len(states) - 1)
            cursor += rect is not None
        else:
            with h.step():
                # Sometimes two edits in one step, as a drag makes many dabs.
                for _ in range(rng.integers(1, 3)):
                    random_op(rng, m, image, proposal, h.record)
            if not np.array_equal(m, states[cursor]):
                states, cursor = states[: cursor + 1] + [m.copy()], cursor + 1
        assert np.array_equal(m, states[cursor])
        assert h.undo_steps == cursor and h.redo_steps == len(states) - 1 - cursor


def _covers(outer, inner) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and outer[2] >= inner[2]
        and (outer[3] >= inner[3])
    )


def test_a_new_edit_clears_redo_but_an_edit_that_changes_nothing_does_not() -> None:
    m = np.zeros((20, 20), np.uint8)
    h = UndoHistory(m, tile=8)
    for value in (1, 2):
        with h.step():
            brush(m, 10, 10, 3, value, h.record)
    h.undo()
    assert h.can_redo
    with h.step():
        brush(m, 10, 10, 3, 1, h.record)  # class 1 is already there: no change, no step
    assert h.can_redo and h.undo_steps == 1
    with h.step():
        brush(m, 2, 2, 1, 3, h.record)
    assert not h.can_redo and h.redo_steps == 0 and h.undo_steps == 2


def test_step_count_bound_drops_the_oldest() -> None:
    m = np.zeros((16, 16), np.uint8)
    h = UndoHistory(m, tile=4, max_steps=5)
    snapshots = [m.copy()]
    for k in range(1, 11):
        with h.step():
            brush(m, k, k, 1, k, h.record)
        snapshots.append(m.copy())
    assert h.undo_steps == 5
    while h.undo() is not None:
        pass
    assert np.array_equal(m, snapshots[5])


def test_byte_bound_drops_the_oldest_but_keeps_the_newest_step() -> None:
    m = np.zeros((64, 64), np.uint8)
    h = UndoHistory(m, tile=8, max_bytes=1000)  # one changed tile costs 2 x 64 bytes
    for k in range(20):
        with h.step():
            brush(m, 4 + 8 * (k % 8), 4, 1, 1 + k % 3, h.record)
        assert h.memory_bytes <= 1000
    assert h.undo_steps == 1000 // 128
    with h.step():
        clear(m, h.record)  # touches more tiles than the budget holds: still undoable
    assert h.undo_steps == 1 and h.memory_bytes > 1000
    h.undo()
    assert m.any()


def test_only_tiles_with_changed_pixels_are_stored() -> None:
    m = np.zeros((256, 256), np.uint8)
    h = UndoHistory(m, tile=64)
    with h.step():
        stroke(m, [(10, 10), (245, 245)], 1, 1, h.record)  # a diagonal: 4 tiles + neighbours
    tiles = {(y // 64, x // 64) for y, x in np.argwhere(m)}
    assert h.memory_bytes == len(tiles) * 2 * 64 * 64
    assert len(tiles) < 16  # not every tile of its bounding box


def test_many_small_strokes_on_a_large_mask_stay_small_and_all_undo() -> None:
    rng = np.random.default_rng(3)
    m = np.zeros((4096, 4096), np.uint8)
    m[1000:3000, 1000:3000] = 1  # an AI proposal being corrected
    original = m.copy()
    h = UndoHistory(m)
    for _ in range(150):
        y, x = rng.uniform(0, 4096, 2)
        points = [(y + 5 * k, x + rng.uniform(-3, 3)) for k in range(5)]
        with h.step():  # classes 2 and 3 are new, so every stroke changes pixels
            stroke(m, points, float(rng.uniform(2, 5)), int(rng.integers(2, 4)), h.record)
    final = m.copy()
    assert h.undo_steps == 150
    # Each stroke keeps its 1-4 touched 64x64 tiles twice (before and after): about 2 MB
    # here, where whole copies would take 150 x 16 MB.
    assert h.memory_bytes < m.nbytes / 6, h.memory_bytes
    undone = 0
    while h.undo() is not None:
        undone += 1
    assert undone == h.redo_steps == 150 and np.array_equal(m, original)
    while h.redo() is not None:
        pass
    assert np.array_equal(m, final)


def test_misuse_raises() -> None:
    m = np.zeros((8, 8), np.uint8)
    h = UndoHistory(m)
    with pytest.raises(RuntimeError, match="begin"):
        h.record((0, 0, 1, 1))
    with pytest.raises(RuntimeError, match="begin"):
        h.end()
    h.begin()
    with pytest.raises(RuntimeError, match="already open"):
        h.begin()
    with pytest.raises(RuntimeError, match="open step"):
        h.undo()
    assert h.end() is None
    with pytest.raises(ValueError):
        UndoHistory(m, tile=0)


def test_a_step_that_raises_midway_stays_undoable() -> None:
    m = np.zeros((16, 16), np.uint8)
    h = UndoHistory(m, tile=4)
    with pytest.raises(ValueError), h.step():
        brush(m, 3, 3, 2, 1, h.record)
        brush(m, 3, 3, 2, 999, h.record)
    assert h.undo_steps == 1 and h.undo() is not None and not m.any()


def test_reset_forgets_everything() -> None:
    m = np.zeros((16, 16), np.uint8)
    h = UndoHistory(m, tile=4)
    with h.step():
        brush(m, 3, 3, 2, 1, h.record)
    h.reset()
    assert not h.can_undo and h.memory_bytes == 0
