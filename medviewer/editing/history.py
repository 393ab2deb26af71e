"""Bounded undo/redo for a label map that stores changed tiles, never whole copies.

One step is one user action; a whole mouse drag is one step (docs/ARCHITECTURE.md principle 6,
as napari's labels layer does with `block_history`). Inside a step, `record(rect)` runs before
pixels change: the first time the step touches a tile, the tile's original content is copied. At
`end()` the current content of those tiles is copied for redo, and tiles the step left as
they were are dropped. The stacks are bounded by step count and by bytes (as ITK-SNAP bounds
undo by memory); the oldest steps go first, so memory does not grow with the image size.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from medviewer.editing.label_ops import Rect, check_label_map, union

Tiles = dict[tuple[int, int], np.ndarray]  # (tile row, tile column) -> tile content


@dataclass
class _Step:
    before: Tiles = field(default_factory=dict)
    after: Tiles = field(default_factory=dict)
    rect: Rect | None = None  # what undo and redo give the viewer to repaint

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.before.values()) + sum(
            a.nbytes for a in self.after.values()
        )


class UndoHistory:
    """Undo and redo for edits made to `mask` in place; every edit must happen in a step."""

    def __init__(
        self,
        mask: np.ndarray,
        tile: int = 64,
        max_steps: int = 200,
        max_bytes: int = 64 * 2**20,
    ) -> None:
        check_label_map(mask)
        if tile < 1 or max_steps < 1 or max_bytes < 0:
            raise ValueError(
                f"need tile >= 1, max_steps >= 1, max_bytes >= 0; got {tile}, {max_steps}, "
                f"{max_bytes}"
            )
        self._mask = mask
        self._tile = tile
        self.max_steps = max_steps
        self.max_bytes = max_bytes
        self._undo: deque[_Step] = deque()
        self._redo: list[_Step] = []
        self._open: _Step | None = None
        self._stored = 0  # bytes held by both stacks, kept current so checks are O(1)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_steps(self) -> int:
        return len(self._undo)

    @property
    def redo_steps(self) -> int:
        return len(self._redo)

    @property
    def in_step(self) -> bool:
        return self._open is not None

    @property
    def memory_bytes(self) -> int:
        """Bytes of tile copies held, including those of a step still open."""
        return self._stored + (self._open.nbytes if self._open else 0)

    def begin(self) -> None:
        if self._open is not None:
            raise RuntimeError("a history step is already open; call end() first")
        self._open = _Step()

    @contextmanager
    def step(self) -> Iterator[None]:
        """`with history.step(): ...` = begin() ... end(), also when the edit raises midway
        (whatever it had already changed stays undoable)."""
        self.begin()
        try:
            yield
        finally:
            self.end()

    def record(self, rect: Rect | None, changed: np.ndarray | None = None) -> None:
        """Call before changing the pixels in rect. `changed` (shaped like rect), when given,
        marks the pixels that will change, so tiles the rectangle only grazes are not copied.
        """
        if self._open is None:
            raise RuntimeError("record() outside a history step; call begin() first")
        if rect is None:
            return
        ry, rx = rect[0], rect[1]
        y0, x0 = max(rect[0], 0), max(rect[1], 0)
        y1, x1 = min(rect[2], self._mask.shape[0]), min(rect[3], self._mask.shape[1])
        if y0 >= y1 or x0 >= x1:
            return
        t, before = self._tile, self._open.before
        for ty in range(y0 // t, (y1 - 1) // t + 1):
            for tx in range(x0 // t, (x1 - 1) // t + 1):
                if (ty, tx) in before:  # the first copy is the original; later ones are not
                    continue
                if changed is not None:
                    ys = slice(max(ty * t, y0) - ry, min(ty * t + t, y1) - ry)
                    xs = slice(max(tx * t, x0) - rx, min(tx * t + t, x1) - rx)
                    if not changed[ys, xs].any():
                        continue
                before[(ty, tx)] = self._tile_view(ty, tx).copy()
        self._open.rect = union(self._open.rect, (y0, x0, y1, x1))

    def end(self) -> Rect | None:
        """Close the step; return its rect, or None when it changed nothing (no undo step)."""
        if self._open is None:
            raise RuntimeError("end() without begin()")
        step, self._open = self._open, None
        for key, old in step.before.items():
            now = self._tile_view(*key)
            if not np.array_equal(old, now):
                step.after[key] = now.copy()
        if not step.after:
            return None  # e.g. painting a class over itself: the redo stack stays valid
        step.before = {key: step.before[key] for key in step.after}
        # A new edit forks history: what was undone can no longer be redone on top of it.
        self._stored -= sum(s.nbytes for s in self._redo)
        self._redo.clear()
        self._undo.append(step)
        self._stored += step.nbytes
        # The newest step is kept even if alone over budget: the last action stays undoable.
        while len(self._undo) > self.max_steps or (
            self._stored > self.max_bytes and len(self._undo) > 1
        ):
            self._stored -= self._undo.popleft().nbytes
        return step.rect

    def undo(self) -> Rect | None:
        """Restore the state before the latest step; return the rect to repaint."""
        if self._open is not None:
            raise RuntimeError("undo() inside an open step; call end() first")
        if not self._undo:
            return None
        step = self._undo.pop()
        self._put(step.before)
        self._redo.append(step)
        return step.rect

    def redo(self) -> Rect | None:
        """Re-apply the latest undone step; return the rect to repaint."""
        if self._open is not None:
            raise RuntimeError("redo() inside an open step; call end() first")
        if not self._redo:
            return None
        step = self._redo.pop()
        self._put(step.after)
        self._undo.append(step)
        return step.rect

    def reset(self) -> None:
        """Forget all steps (e.g. after the mask was replaced outside the history)."""
        self._undo.clear()
        self._redo.clear()
        self._open = None
        self._stored = 0

    def _tile_view(self, ty: int, tx: int) -> np.ndarray:
        t = self._tile
        return self._mask[ty * t : ty * t + t, tx * t : tx * t + t]

    def _put(self, tiles: Tiles) -> None:
        for (ty, tx), content in tiles.items():
            self._tile_view(ty, tx)[...] = content
