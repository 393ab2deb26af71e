"""Axial, coronal and sagittal panes of the volume under review, each an image, its mask overlay
and the crosshair, drawn at physical aspect (a pixel is `spacing` mm). The buttons mean what
they mean in the 2D view: left = brush or eraser (Shift, or any other tool: move the
crosshair), right-drag = window/level (shared by the three), wheel = slice in this plane,
Ctrl+wheel = zoom, middle-drag = pan."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QTransform
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from medviewer.imaging.display import Window
from medviewer.imaging.reslice import PLANES, PlaneName
from medviewer.qt.viewer.brush_cursor import BrushCursor
from medviewer.qt.viewer.image_view import ToolViewBox
from medviewer.qt.viewer.overlay import OverlayItem

if TYPE_CHECKING:
    from medviewer.qt.tools import ToolController
    from medviewer.qt.volume import VolumeController
    from medviewer.workspace.volume_review import VolumeReview

# One colour per plane for its title and for its lines in the other planes (Slicer's habit).
PLANE_COLOURS: dict[str, tuple[int, int, int]] = {
    "axial": (230, 80, 80),
    "coronal": (90, 200, 90),
    "sagittal": (230, 210, 70),
}
PAINT_TOOLS = ("brush", "eraser")


class _PaneView(pg.GraphicsView):
    """Takes Ctrl+Z / Ctrl+Shift+Z while it has focus, so undo in a pane undoes the volume's
    stroke rather than the 2D view's (the window-wide shortcut would take it otherwise)."""

    sig_undo = Signal()
    sig_redo = Signal()

    def event(self, ev: QEvent) -> bool:
        if ev.type() == QEvent.Type.ShortcutOverride and self._which(ev) is not None:
            ev.accept()
            return True
        return super().event(ev)

    def keyPressEvent(self, ev: QKeyEvent) -> None:
        which = self._which(ev)
        if which == "undo":
            self.sig_undo.emit()
        elif which == "redo":
            self.sig_redo.emit()
        else:
            super().keyPressEvent(ev)

    @staticmethod
    def _which(ev) -> str | None:
        if ev.matches(QKeySequence.StandardKey.Undo):
            return "undo"
        if ev.matches(QKeySequence.StandardKey.Redo) or (
            ev.key() == Qt.Key.Key_Z
            and ev.modifiers()
            == (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        ):
            return "redo"
        return None


class PlanePane(QWidget):
    """One plane: a title line and a view (image, mask, crosshair lines)."""

    sig_cursor = Signal(str)

    def __init__(self, name: PlaneName) -> None:
        super().__init__()
        self.name = name
        self.title = QLabel(name.capitalize())
        r, g, b = PLANE_COLOURS[name]
        self.title.setStyleSheet(f"color: rgb({r},{g},{b}); font-weight: bold")
        self.view = _PaneView()
        self.box = ToolViewBox()
        self.view.setCentralItem(self.box)
        self.image_item = pg.ImageItem()
        self.mask_item = OverlayItem()
        for z, item in enumerate((self.image_item, self.mask_item)):
            item.setZValue(z)
            self.box.addItem(item)
        # Lines of the other two planes: vertical at the crosshair's column, horizontal at its row.
        self.v_line = pg.InfiniteLine(angle=90, movable=False)
        self.h_line = pg.InfiniteLine(angle=0, movable=False)
        for line in (self.v_line, self.h_line):
            line.setZValue(3)
            self.box.addItem(line)
        self.cursor = BrushCursor(offset=0.0)  # the brush outline, in mm as the plane
        self.box.addItem(self.cursor)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(1)
        layout.addWidget(self.title)
        layout.addWidget(self.view)
        self.spacing = (1.0, 1.0)  # mm between rows, between columns
        self.shape: tuple[int, int] = (0, 0)
        self.pixels: np.ndarray | None = None  # what is drawn (uint8), for tests and readout

    def set_geometry(self, shape: tuple[int, int], spacing: tuple[float, float]) -> None:
        """A new volume: scale pixels to mm so the plane shows at its physical aspect."""
        self.shape, self.spacing = shape, spacing
        self.cursor.edge = 0.5 * min(spacing)
        scale = QTransform.fromScale(spacing[1], spacing[0])
        self.image_item.setTransform(scale)
        self.mask_item.setTransform(scale)

    def set_pixels(self, shown: np.ndarray) -> None:
        self.pixels = shown
        self.image_item.setImage(shown, autoLevels=False, levels=(0, 255))

    def set_crosshair(self, row: int, column: int, lines: dict[str, tuple[int, int, int]]) -> None:
        self.v_line.setPos((column + 0.5) * self.spacing[1])
        self.h_line.setPos((row + 0.5) * self.spacing[0])
        self.v_line.setPen(pg.mkPen(lines["v"], width=1))
        self.h_line.setPen(pg.mkPen(lines["h"], width=1))

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        """View coordinates (mm) -> (row, column) in the plane, sub-pixel."""
        return y / self.spacing[0] - 0.5, x / self.spacing[1] - 0.5

    def to_view(self, row: float, column: float) -> QPointF:
        """(row, column) of a pixel centre -> view coordinates (mm)."""
        return QPointF((column + 0.5) * self.spacing[1], (row + 0.5) * self.spacing[0])


class MprView:
    """The three panes wired to the volume controller and the tool settings."""

    def __init__(self, volume: VolumeController, tools: ToolController) -> None:
        self.volume = volume
        self.tools = tools
        self.panes: dict[str, PlanePane] = {name: PlanePane(name) for name in PLANES}
        self.opacity = 0.5
        self._navigating: str | None = None  # plane whose left drag moves the crosshair
        for name, pane in self.panes.items():
            box = pane.box
            box.sig_tool_press.connect(lambda x, y, n=name: self._press(n, x, y))
            box.sig_tool_move.connect(lambda x, y, n=name: self._move(n, x, y))
            box.sig_tool_release.connect(lambda x, y, n=name: self._release(n, x, y))
            box.sig_scroll.connect(lambda d, n=name: volume.scroll(n, d))
            box.sig_window_drag.connect(self._drag_window)
            pane.view.scene().sigMouseMoved.connect(lambda pos, n=name: self._hover(n, pos))
            pane.view.sig_undo.connect(volume.undo)
            pane.view.sig_redo.connect(volume.redo)
        volume.sig_loaded.connect(self._loaded)
        volume.sig_crosshair_changed.connect(lambda _: self.refresh())
        volume.sig_window_changed.connect(lambda _: self.refresh_images())
        volume.sig_labels_changed.connect(self.refresh_masks)
        volume.sig_drawn.connect(self._drawn)

    # -- drawing -----------------------------------------------------------------------

    def _loaded(self, review: VolumeReview) -> None:
        for name, pane in self.panes.items():
            plane = review.reslicer.plane(review.stored, name, self.volume.crosshair)
            pane.set_geometry(plane.pixels.shape, plane.spacing)
        self.refresh()
        for pane in self.panes.values():  # now that each has its image: fit it
            pane.box.autoRange(padding=0, items=[pane.image_item])

    def refresh(self) -> None:
        self.refresh_images()
        self.refresh_masks()
        self._crosshair_lines()

    def refresh_images(self) -> None:
        review = self.volume.review
        if review is None:
            return
        for name, pane in self.panes.items():
            pane.set_pixels(review.render_plane(name, self.volume.crosshair, self.volume.window))

    def refresh_masks(self) -> None:
        review = self.volume.review
        if review is None:
            return
        colours = list(review.palette.extended(256).colors)
        for name, pane in self.panes.items():
            plane = review.reslicer.plane(review.labels, name, self.volume.crosshair)
            pane.mask_item.set_mask(np.ascontiguousarray(plane.pixels), colours)
            pane.mask_item.setOpacity(self.opacity)

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        for pane in self.panes.values():
            pane.mask_item.setOpacity(opacity)

    def _drawn(self, plane: str, drawn: np.ndarray, rect: tuple[int, int, int, int]) -> None:
        """A stroke in progress: its pane shows the drawing (the volume changes on release)."""
        item = self.panes[plane].mask_item
        if item.mask is not drawn:
            review = self.volume.review
            assert review is not None
            item.set_mask(drawn, list(review.palette.extended(256).colors))
        else:
            item.update_rect(rect)

    def _crosshair_lines(self) -> None:
        review = self.volume.review
        if review is None:
            return
        for name, pane in self.panes.items():
            row, column = review.reslicer.point_in(name, self.volume.crosshair)
            others = [p for p in PLANES if p != name]
            # The vertical line is the plane cut along columns: sagittal in axial and
            # coronal, coronal in sagittal; the horizontal one the remaining plane.
            v = "coronal" if name == "sagittal" else "sagittal"
            h = next(p for p in others if p != v)
            pane.set_crosshair(row, column, {"v": PLANE_COLOURS[v], "h": PLANE_COLOURS[h]})
            index = review.reslicer.plane(review.stored, name, self.volume.crosshair).index
            depth = review.reslicer.depth(name)
            pane.title.setText(f"{name.capitalize()}  {index + 1}/{depth}")

    # -- input -------------------------------------------------------------------------

    def _paints(self) -> bool:
        shift = QApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier
        return self.tools.tool in PAINT_TOOLS and not shift

    def _press(self, plane: str, x: float, y: float) -> None:
        row, column = self.panes[plane].to_pixel(x, y)
        if self._paints():
            value = self.tools.value if self.tools.tool == "brush" else 0
            radius = self.volume.brush_mm(self.tools.radius)  # round in mm in every plane
            self.volume.begin_stroke(plane, value, radius, row, column)  # type: ignore[arg-type]
        else:
            self._navigating = plane
            self.volume.click(plane, row, column)  # type: ignore[arg-type]

    def _move(self, plane: str, x: float, y: float) -> None:
        row, column = self.panes[plane].to_pixel(x, y)
        if self.volume.in_stroke:
            self.volume.extend_stroke(row, column)
        elif self._navigating == plane:
            self.volume.click(plane, row, column)  # type: ignore[arg-type]

    def _release(self, plane: str, x: float, y: float) -> None:
        row, column = self.panes[plane].to_pixel(x, y)
        if self.volume.in_stroke:
            self.volume.end_stroke(row, column)
        elif self._navigating == plane:
            self.volume.click(plane, row, column)  # type: ignore[arg-type]
        self._navigating = None

    def _drag_window(self, dx: float, dy: float) -> None:
        """Right-drag in any pane: one window for the three (as the 2D view's drag)."""
        w = self.volume.window
        if w is None:
            return
        step = max(w.width, 1.0) / 500.0
        self.volume.set_window(
            Window(w.center + dy * step, max(1.0, w.width + dx * step * 2), "manual")
        )

    def _hover(self, plane: str, pos: QPointF) -> None:
        review = self.volume.review
        pane = self.panes[plane]
        if review is None:
            return
        p = pane.box.mapSceneToView(pos)
        self._brush_outline(pane, p.x(), p.y())
        row, column = (int(round(v)) for v in pane.to_pixel(p.x(), p.y()))
        if 0 <= row < pane.shape[0] and 0 <= column < pane.shape[1]:
            voxel = review.reslicer.voxel_at(plane, row, column, self.volume.crosshair)  # type: ignore[arg-type]
            pane.sig_cursor.emit(f"{plane} voxel {voxel}: {review.value_at(voxel):g}")

    def _brush_outline(self, pane: PlanePane, x: float, y: float) -> None:
        """The brush's disc (mm, as a stroke there paints it) under the mouse in this pane."""
        for other in self.panes.values():
            if other is not pane:
                other.cursor.setVisible(False)
        if self.tools.tool not in PAINT_TOOLS or self.volume.review is None:
            pane.cursor.setVisible(False)
            return
        pane.cursor.set_radius(self.volume.brush_mm(self.tools.radius))
        pane.cursor.move_to(x, y)
        height = pane.shape[0] * pane.spacing[0]
        width = pane.shape[1] * pane.spacing[1]
        pane.cursor.setVisible(0 <= x < width and 0 <= y < height)
