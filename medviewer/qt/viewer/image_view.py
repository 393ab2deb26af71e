"""The image view: window/level by right-drag, Ctrl+wheel zoom, middle-drag pan, wheel
scrolls slices, left button for the active correction tool."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from medviewer.imaging.display import Image, Window, default_window, modality_values, render
from medviewer.qt.viewer.overlay import OverlayItem, heatmap_rgba

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


class ToolViewBox(pg.ViewBox):
    """A ViewBox whose buttons mean what radiology viewers mean."""

    sig_tool_press = Signal(float, float)  # image x, y
    sig_tool_move = Signal(float, float)
    sig_tool_release = Signal(float, float)
    sig_window_drag = Signal(float, float)  # dx, dy in screen pixels
    sig_scroll = Signal(int)  # +1 / -1 slice

    def __init__(self) -> None:
        super().__init__(invertY=True, lockAspect=True, enableMenu=False)
        self.setMouseEnabled(x=False, y=False)  # we decide what each button does
        self._pan_start: QPointF | None = None

    def mouseDragEvent(self, ev, axis=None) -> None:
        ev.accept()
        button = ev.button()
        if button == Qt.MouseButton.LeftButton:
            p = self.mapSceneToView(ev.scenePos())
            if ev.isStart():
                # A drag is recognised a few pixels after the press: start where the button
                # went down, so the first stretch of the stroke is not lost.
                down = self.mapSceneToView(ev.buttonDownScenePos())
                self.sig_tool_press.emit(down.x(), down.y())
                self.sig_tool_move.emit(p.x(), p.y())
            elif ev.isFinish():
                self.sig_tool_release.emit(p.x(), p.y())
            else:
                self.sig_tool_move.emit(p.x(), p.y())
        elif button == Qt.MouseButton.RightButton:
            d = ev.screenPos() - ev.lastScreenPos()
            self.sig_window_drag.emit(d.x(), d.y())
        elif button == Qt.MouseButton.MiddleButton:
            last = self.mapSceneToView(ev.lastScenePos())
            now = self.mapSceneToView(ev.scenePos())
            self.translateBy(x=last.x() - now.x(), y=last.y() - now.y())

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            p = self.mapSceneToView(ev.scenePos())
            self.sig_tool_press.emit(p.x(), p.y())
            self.sig_tool_release.emit(p.x(), p.y())

    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)  # zoom about the cursor
        else:
            ev.accept()
            self.sig_scroll.emit(1 if ev.delta() < 0 else -1)


class ImageView(pg.GraphicsView):
    """Image, mask overlay, AI-proposal overlay (for comparison) and heatmap in one ViewBox."""

    sig_cursor = Signal(str)  # "x, y: value" for the status bar
    sig_window_changed = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.box = ToolViewBox()
        self.setCentralItem(self.box)
        self.image_item = pg.ImageItem()
        self.heat_item = pg.ImageItem()
        self.proposal_item = OverlayItem()
        self.mask_item = OverlayItem()
        self.polygon_item = QGraphicsPathItem()
        self.polygon_item.setPen(QPen(QColor(255, 255, 0), 0))
        for z, item in enumerate(
            (self.image_item, self.heat_item, self.proposal_item, self.mask_item, self.polygon_item)
        ):
            item.setZValue(z)
            self.box.addItem(item)
        self.proposal_item.setVisible(False)
        self.image: Image | None = None
        self.window: Window | None = None
        self._values: np.ndarray | None = None
        self.box.sig_window_drag.connect(self._drag_window)
        self.scene().sigMouseMoved.connect(self._hover)

    # -- content -----------------------------------------------------------------------

    def set_image(
        self,
        image: Image,
        window: Window | None = None,
        keep_view: bool = False,
        shown: np.ndarray | None = None,
    ) -> None:
        """Show an image; `shown` is render(image) already made off the GUI thread."""
        self.image = image
        self._values = None
        self.window = window or (None if image.is_colour else default_window(image))
        if shown is not None and window is None:
            self.image_item.setImage(shown, autoLevels=False, levels=(0, 255))
        else:
            self._render()
        if not keep_view:
            # The image alone: overlays still sized for the previous image would widen the range.
            self.box.autoRange(padding=0, items=[self.image_item])

    @property
    def values(self) -> np.ndarray | None:
        """Modality values (e.g. HU) for the cursor readout, window/level and fill; computed on
        first use, as most images are only looked at."""
        if self._values is None and self.image is not None and not self.image.is_colour:
            self._values = modality_values(self.image)
        return self._values

    def set_window(self, window: Window) -> None:
        self.window = window
        self._render()
        self.sig_window_changed.emit(window)

    def _render(self) -> None:
        if self.image is not None:
            self.image_item.setImage(
                render(self.image, self.window), autoLevels=False, levels=(0, 255)
            )

    def _drag_window(self, dx: float, dy: float) -> None:
        """Right-drag: horizontal changes the width, vertical the centre (as PACS viewers do)."""
        if self.window is None or self.values is None:
            return
        span = float(np.ptp(self.values)) or 1.0
        step = span / 1000.0
        w = self.window
        self.set_window(Window(w.center + dy * step, max(1.0, w.width + dx * step * 2), "manual"))

    def set_heatmap(self, cam: np.ndarray | None) -> None:
        if cam is None:
            self.heat_item.clear()
        else:
            self.heat_item.setImage(heatmap_rgba(cam), autoLevels=False, levels=(0, 255))

    def set_polygon(self, points: list[tuple[float, float]]) -> None:
        path = QPainterPath()
        if points:
            path.moveTo(points[0][0], points[0][1])
            for x, y in points[1:]:
                path.lineTo(x, y)
        self.polygon_item.setPath(path)

    def _hover(self, pos: QPointF) -> None:
        if self.image is None:
            return
        p = self.box.mapSceneToView(pos)
        x, y = int(np.floor(p.x())), int(np.floor(p.y()))
        h, w = self.image.pixels.shape[:2]
        if 0 <= x < w and 0 <= y < h:
            values = self.values
            value = values[y, x] if values is not None else self.image.pixels[y, x]
            shown = np.round(value, 2) if np.ndim(value) == 0 else tuple(np.asarray(value).tolist())
            self.sig_cursor.emit(f"x {x}, y {y}: {shown}")
