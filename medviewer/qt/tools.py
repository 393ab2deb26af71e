"""Mouse and keys -> the Qt-free edit session: brush, eraser, polygon, fill, undo/redo."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from medviewer.imaging.display import render

if TYPE_CHECKING:
    from medviewer.qt.review import ReviewController
    from medviewer.qt.viewer.image_view import ImageView

TOOLS = ("brush", "eraser", "polygon", "fill")
FILL_TOLERANCE = 0.05  # of the window width: "similar intensity" as the eye sees it


class ToolController(QObject):
    sig_tool_changed = Signal(str)
    sig_radius_changed = Signal(int)

    def __init__(self, view: ImageView, review: ReviewController) -> None:
        super().__init__()
        self.view = view
        self.review = review
        self.tool = "brush"
        self.radius = 5
        self.value = 1
        self.polygon: list[tuple[float, float]] = []
        box = view.box
        box.sig_tool_press.connect(self.press)
        box.sig_tool_move.connect(self.move)
        box.sig_tool_release.connect(self.release)

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")
        self.cancel_polygon()
        self.tool = tool
        self.sig_tool_changed.emit(tool)

    def set_class(self, value: int) -> None:
        self.value = value

    def change_radius(self, step: int) -> None:
        self.radius = int(np.clip(self.radius + step * max(1, self.radius // 5), 0, 200))
        self.sig_radius_changed.emit(self.radius)

    def reset(self) -> None:
        self.polygon = []
        self.view.set_polygon([])

    # -- mouse -------------------------------------------------------------------------

    def press(self, x: float, y: float) -> None:
        session = self.review.session
        if session is None:
            return
        if self.tool in ("brush", "eraser"):
            session.begin_stroke(self.value if self.tool == "brush" else 0, self.radius)
            self.review.sig_mask_changed.emit(session.extend_stroke((y, x)))
        elif self.tool == "polygon":
            self.polygon.append((x, y))
            self.view.set_polygon(self.polygon)
        elif self.tool == "fill":
            self.review.edited(
                session.fill(self._fill_image(), y, x, self.value, self._tolerance())
            )

    def move(self, x: float, y: float) -> None:
        session = self.review.session
        if session is not None and session.in_stroke:
            self.review.sig_mask_changed.emit(session.extend_stroke((y, x)))

    def release(self, x: float, y: float) -> None:
        session = self.review.session
        if session is not None and session.in_stroke:
            session.extend_stroke((y, x))
            self.review.edited(session.end_stroke())

    # -- polygon -----------------------------------------------------------------------

    def close_polygon(self) -> None:
        session = self.review.session
        if session is not None and len(self.polygon) >= 3:
            points = [(y, x) for x, y in self.polygon]
            self.review.edited(session.polygon(points, self.value))
        self.reset()

    def cancel_polygon(self) -> None:
        self.reset()

    # -- undo --------------------------------------------------------------------------

    def undo(self) -> None:
        if self.review.session is not None:
            self.review.edited(self.review.session.undo())

    def redo(self) -> None:
        if self.review.session is not None:
            self.review.edited(self.review.session.redo())

    def accept_proposal(self) -> None:
        if self.review.session is not None and self.review.session.proposal is not None:
            self.review.edited(self.review.session.accept_proposal())

    def remove_islands(self, min_pixels: int) -> None:
        if self.review.session is not None:
            self.review.edited(self.review.session.remove_islands(min_pixels))

    def clear(self) -> None:
        if self.review.session is not None:
            self.review.edited(self.review.session.clear())

    def _fill_image(self) -> np.ndarray:
        values = self.view.values
        if values is not None:
            return values
        assert self.view.image is not None
        return render(self.view.image).astype(np.float32).mean(axis=-1)

    def _tolerance(self) -> float:
        window = self.view.window
        return FILL_TOLERANCE * (window.width if window else 255.0)
