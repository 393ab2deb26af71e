"""Mouse and keys -> the Qt-free edit session: brush, eraser, polygon, fill, the smart tools
(threshold brush, region growing, level tracing), measurements, undo/redo.

Each tool is a thin call into the core: `editing.label_ops` and `editing.smart_tools` decide
what is painted, `imaging.measure` what a ruler or ROI reads; every press-to-release is one
undo step of the `EditSession`, saved by the ReviewController like any other edit.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QPointF, Qt, Signal

from medviewer.editing import smart_tools
from medviewer.editing.errors import EditInputError
from medviewer.imaging import measure
from medviewer.imaging.display import render
from medviewer.qt.viewer.brush_cursor import BrushCursor, MeasureItems

if TYPE_CHECKING:
    from medviewer.qt.review import ReviewController
    from medviewer.qt.viewer.image_view import ImageView

TOOLS = ("brush", "eraser", "polygon", "fill", "threshold", "grow", "trace", "ruler", "roi")
TOOLS += ("click",)  # AI click (qt.click_tool): it hears the clicks itself; here it paints nothing
BRUSHES = ("brush", "eraser", "threshold")  # tools that show the brush outline as the cursor
FILL_TOLERANCE = 0.05  # of the window width: "similar intensity" as the eye sees it
GROW_TOLERANCE = 10  # region growing's default, in percent of the window width
GROW_LIMIT = 0.5  # a grown region over this share of the image is a leak, not a structure


class ToolController(QObject):
    sig_tool_changed = Signal(str)
    sig_radius_changed = Signal(int)
    sig_class_changed = Signal(int)
    sig_status = Signal(str)  # the tool and brush size, for the status bar
    sig_measured = Signal(str)  # a ruler or ROI reading, or why a tool did nothing
    sig_measurement = Signal(object)  # a finished ruler or ROI (measure.Measurement), to keep

    def __init__(self, view: ImageView, review: ReviewController) -> None:
        super().__init__()
        self.view = view
        self.review = review
        self.tool = "brush"
        self.radius = 5
        self.value = 1
        self.tolerance = GROW_TOLERANCE  # percent of the window width (the slider's value)
        self.polygon: list[tuple[float, float]] = []
        self.threshold_range: tuple[float, float] | None = None
        self.measurement = ""
        self._measure_start: tuple[float, float] | None = None
        self.cursor = BrushCursor()
        view.box.addItem(self.cursor)
        self.marks = MeasureItems(view.box)
        box = view.box
        box.sig_tool_press.connect(self.press)
        box.sig_tool_move.connect(self.move)
        box.sig_tool_release.connect(self.release)
        view.scene().sigMouseMoved.connect(self._hover)
        view.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; valid: {', '.join(TOOLS)}")
        self.cancel_polygon()
        self.tool = tool
        self.cursor.setVisible(False)
        if tool not in ("ruler", "roi"):
            self.marks.hide()
        self.sig_tool_changed.emit(tool)
        self.sig_status.emit(self.status_text())

    def set_class(self, value: int) -> None:
        self.value = value
        self.sig_class_changed.emit(value)

    def set_tolerance(self, percent: int) -> None:
        self.tolerance = percent

    def change_radius(self, step: int) -> None:
        self.radius = int(np.clip(self.radius + step * max(1, self.radius // 5), 0, 200))
        self.cursor.set_radius(self.radius)
        self.sig_radius_changed.emit(self.radius)
        self.sig_status.emit(self.status_text())

    def status_text(self) -> str:
        """'Brush  r 5 px (3.5 mm)': the tool and, for brushes, the size in both units."""
        name = {
            "roi": "Ellipse ROI",
            "grow": "Region growing",
            "trace": "Level tracing",
            "click": "AI click",
        }.get(self.tool, self.tool.capitalize())
        if self.tool not in BRUSHES:
            if self.tool == "grow":
                return f"{name}  tolerance {self.tolerance}% of the window"
            return name
        size = f"{name}  r {self.radius} px"
        image = self.view.image
        spacing = image.pixel_spacing if image is not None else None
        if spacing:
            size += f" ({self.radius * min(spacing):.1f} mm)"
        return size

    def reset(self) -> None:
        self.polygon = []
        self.view.set_polygon([])
        self.marks.hide()
        self.measurement = ""
        self.sig_status.emit(self.status_text())

    # -- mouse -------------------------------------------------------------------------

    def press(self, x: float, y: float) -> None:
        if self.tool in ("ruler", "roi"):
            if self.view.image is not None:
                self._measure_start = (x, y)
            return
        session = self.review.session
        if session is None:
            return
        try:
            self._press(session, x, y)
        except EditInputError as e:  # e.g. a click beside the image
            self.sig_measured.emit(str(e))

    def _press(self, session, x: float, y: float) -> None:
        if self.tool in ("brush", "eraser"):
            session.begin_stroke(self.value if self.tool == "brush" else 0, self.radius)
            self.review.sig_mask_changed.emit(session.extend_stroke((y, x)))
        elif self.tool == "threshold":
            # The range comes from where the stroke starts (as ITK-SNAP's and Slicer's
            # threshold paint do when picked from the image).
            image = self._fill_image()
            lo, hi = smart_tools.pick_range(image, y, x)
            self.threshold_range = (lo, hi)
            painter = functools.partial(_threshold_piece, image=image, lo=lo, hi=hi)
            session.begin_stroke(self.value, self.radius, painter)
            self.review.sig_mask_changed.emit(session.extend_stroke((y, x)))
            self.sig_measured.emit(f"Threshold brush: {lo:.0f} to {hi:.0f}{self._unit()}")
        elif self.tool == "polygon":
            self.polygon.append((x, y))
            self.view.set_polygon(self.polygon)
        elif self.tool == "fill":
            self.review.edited(
                session.fill(self._fill_image(), y, x, self.value, self._tolerance())
            )
        elif self.tool == "grow":
            self.grow([(y, x)])
        elif self.tool == "trace":
            image = self._fill_image()
            self.review.edited(
                session.edit(
                    lambda m, rec: smart_tools.level_trace(m, image, y, x, self.value, True, rec)
                )
            )

    def grow(self, seeds: list[tuple[float, float]]) -> None:
        """Region growing from (y, x) seeds within the tolerance slider's share of the window."""
        session = self.review.session
        if session is None:
            return
        image = self._fill_image()
        window = self.view.window
        tolerance = self.tolerance / 100 * (window.width if window else 255.0)
        limit = int(GROW_LIMIT * image.size)

        def op(m: np.ndarray, rec) -> tuple[int, int, int, int] | None:
            return smart_tools.region_grow(m, image, seeds, self.value, tolerance, 4, limit, rec)

        rect = session.edit(op)
        if rect is None and smart_tools.grow_region(image, seeds, tolerance, 4, limit) is None:
            self.sig_measured.emit(
                "Region growing: the region leaks into most of the image; lower the tolerance"
            )
        self.review.edited(rect)

    def move(self, x: float, y: float) -> None:
        if self._measure_start is not None:
            self._measure(x, y, final=False)
            return
        session = self.review.session
        if session is not None and session.in_stroke:
            self.review.sig_mask_changed.emit(session.extend_stroke((y, x)))

    def release(self, x: float, y: float) -> None:
        if self._measure_start is not None:
            self._measure(x, y, final=True)
            self._measure_start = None
            return
        session = self.review.session
        if session is not None and session.in_stroke:
            session.extend_stroke((y, x))
            self.review.edited(session.end_stroke())

    # -- measurements ------------------------------------------------------------------

    def _measure(self, x: float, y: float, final: bool) -> None:
        image = self.view.image
        if image is None or self._measure_start is None:
            return
        x0, y0 = self._measure_start
        found: measure.Measurement | None = None
        try:
            if self.tool == "ruler":
                found = measure.ruler_measurement((y0, x0), (y, x), image.pixel_spacing)
                self.marks.show_line(x0, y0, x, y, found.text)
            else:
                if final or abs(x - x0) + abs(y - y0) > 0:
                    state = self.review.state
                    modality = state.image.modality if state is not None else ""
                    found = measure.roi_measurement(image, (y0, x0, y, x), modality)
                self.marks.show_ellipse(x0, y0, x, y, found.text.split("  ")[0] if found else "")
            full = found.text + (f"  ({found.note})" if found.note else "") if found else ""
        except measure.MeasureError as e:
            full, found = str(e), None
        self.measurement = full
        if final or self.tool == "ruler":
            self.sig_measured.emit(full)
        if final and found is not None and (x, y) != (x0, y0):
            self.sig_measurement.emit(found)  # a click alone measures nothing worth keeping

    # -- the brush outline ---------------------------------------------------------------

    def _hover(self, pos: QPointF) -> None:
        image = self.view.image
        if image is None or self.tool not in BRUSHES:
            self.cursor.setVisible(False)
            return
        p = self.view.box.mapSceneToView(pos)
        h, w = image.pixels.shape[:2]
        inside = -self.radius <= p.x() < w + self.radius and -self.radius <= p.y() < h + self.radius
        self.cursor.set_radius(self.radius)
        self.cursor.move_to(p.x(), p.y())
        self.cursor.setVisible(inside)

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

    def _unit(self) -> str:
        state = self.review.state
        return " HU" if state is not None and state.image.modality.upper() == "CT" else ""


def _threshold_piece(
    mask: np.ndarray, points, radius: float, value: int, before_write, *, image, lo, hi
):
    """One piece of a threshold-brush stroke (EditSession's StrokePainter signature)."""
    return smart_tools.threshold_brush(mask, image, points, radius, value, lo, hi, before_write)
