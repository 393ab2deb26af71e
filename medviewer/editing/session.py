"""One image's correction session: the calls a viewer makes, each one undo step.

The GUI stays thin (docs/ARCHITECTURE.md principle 2): a tool's mouse press/move/release maps to
begin_stroke / extend_stroke / end_stroke, a button to paint, fill, accept_proposal, ...;
every call returns the rectangle to repaint. `version` counts changes so autosave can tell
what it has written: save a copy taken at version v, then call mark_saved(v).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from medviewer.editing import label_ops
from medviewer.editing.history import UndoHistory
from medviewer.editing.label_ops import BeforeWrite, Point, Rect

# How a stroke paints one piece (label_ops.stroke's signature): the brush, or a smart brush
# such as smart_tools.threshold_brush with its image and range bound.
StrokePainter = Callable[[np.ndarray, Sequence[Point], float, int, BeforeWrite], "Rect | None"]


@dataclass
class _Stroke:
    value: int
    radius: float
    painter: StrokePainter
    last: Point | None = None
    rect: Rect | None = None


class EditSession:
    """A label map under correction, its undo history and, optionally, the AI proposal."""

    def __init__(
        self,
        mask: np.ndarray,
        proposal: np.ndarray | None = None,
        *,
        tile: int = 64,
        max_steps: int = 200,
        max_bytes: int = 64 * 2**20,
    ) -> None:
        self._history = UndoHistory(mask, tile, max_steps, max_bytes)  # checks the mask
        self._mask = mask
        self._proposal: np.ndarray | None = None
        self.proposal = proposal
        self._version = 0
        self._saved = 0
        self._stroke: _Stroke | None = None

    @property
    def mask(self) -> np.ndarray:
        return self._mask

    @property
    def proposal(self) -> np.ndarray | None:
        return self._proposal

    @proposal.setter
    def proposal(self, proposal: np.ndarray | None) -> None:
        if proposal is not None:
            label_ops.check_label_map(proposal)
            if proposal.shape != self._mask.shape:
                raise ValueError(f"proposal {proposal.shape} != mask {self._mask.shape}")
        self._proposal = proposal

    @property
    def history(self) -> UndoHistory:
        return self._history

    @property
    def version(self) -> int:
        """Increases by one with every call that changes pixels (each dab of a stroke too)."""
        return self._version

    @property
    def saved_version(self) -> int:
        return self._saved

    @property
    def dirty(self) -> bool:
        """Changed since the last mark_saved (an undo back to the saved state counts too)."""
        return self._version > self._saved

    @property
    def can_undo(self) -> bool:
        return self._history.can_undo or self.in_stroke

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo and not self.in_stroke

    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def mark_saved(self, version: int) -> None:
        """The content at `version` is on disk. A late report of an older save is ignored."""
        if version > self._version:
            raise ValueError(f"version {version} is newer than the session's {self._version}")
        self._saved = max(self._saved, version)

    # -- one call, one undo step ------------------------------------------------------------

    def paint(self, points: Sequence[Point], radius: float, value: int) -> Rect | None:
        """A whole stroke at once (a dab when `points` has one point)."""
        return self._edit(lambda rec: label_ops.stroke(self._mask, points, radius, value, rec))

    def erase(self, points: Sequence[Point], radius: float) -> Rect | None:
        return self.paint(points, radius, 0)

    def polygon(self, points: Sequence[Point], value: int) -> Rect | None:
        return self._edit(lambda rec: label_ops.fill_polygon(self._mask, points, value, rec))

    def fill(
        self, image: np.ndarray, y: float, x: float, value: int, tolerance: float
    ) -> Rect | None:
        return self._edit(
            lambda rec: label_ops.flood_fill(self._mask, image, y, x, value, tolerance, rec)
        )

    def remove_islands(self, min_pixels: int) -> Rect | None:
        return self._edit(lambda rec: label_ops.remove_islands(self._mask, min_pixels, rec))

    def accept_proposal(self) -> Rect | None:
        if self._proposal is None:
            raise ValueError("this image has no AI proposal to accept")
        proposal = self._proposal
        return self._edit(lambda rec: label_ops.accept(self._mask, proposal, rec))

    def clear(self) -> Rect | None:
        return self._edit(lambda rec: label_ops.clear(self._mask, rec))

    def edit(self, op: Callable[[np.ndarray, BeforeWrite], Rect | None]) -> Rect | None:
        """Any label-map operation in label_ops' convention (edits the map in place, calls
        before_write first) as one undo step: region growing, level tracing."""
        return self._edit(lambda rec: op(self._mask, rec))

    def undo(self) -> Rect | None:
        self.end_stroke()  # Ctrl+Z during a drag undoes the drag so far
        return self._count(self._history.undo())

    def redo(self) -> Rect | None:
        self.end_stroke()
        return self._count(self._history.redo())

    # -- a mouse drag: many dabs, one undo step ---------------------------------------------

    def begin_stroke(
        self, value: int, radius: float, painter: StrokePainter = label_ops.stroke
    ) -> None:
        """Mouse press. A stroke still open (a lost release event) is ended first.
        `painter` paints each piece (default: the plain brush)."""
        label_ops.check_label_map(self._mask, value)  # fail on press, not on the first move
        if not radius >= 0:
            raise ValueError(f"brush radius must be >= 0, got {radius}")
        self.end_stroke()
        self._history.begin()
        self._stroke = _Stroke(int(value), float(radius), painter)

    def extend_stroke(self, point: Point) -> Rect | None:
        """Mouse move: paint from the previous point to this one; return the rect to repaint."""
        s = self._stroke
        if s is None:
            raise RuntimeError("extend_stroke() without begin_stroke()")
        points = [point] if s.last is None else [s.last, point]
        rect = s.painter(self._mask, points, s.radius, s.value, self._history.record)
        s.last = point
        s.rect = label_ops.union(s.rect, rect)
        return self._count(rect)

    def end_stroke(self) -> Rect | None:
        """Mouse release: the stroke becomes one undo step; return everything it changed.

        A release without a press returns None, as stray events do reach viewers.
        """
        s, self._stroke = self._stroke, None
        if s is None:
            return None
        self._history.end()
        return s.rect

    def _edit(self, op: Callable[[BeforeWrite], Rect | None]) -> Rect | None:
        self.end_stroke()
        with self._history.step():
            rect = op(self._history.record)
        return self._count(rect)

    def _count(self, rect: Rect | None) -> Rect | None:
        if rect is not None:
            self._version += 1
        return rect
