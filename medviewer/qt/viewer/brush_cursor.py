"""The brush's outline as the cursor over the image (the disc a dab paints), the ruler and ROI
being drawn and those kept with the image; items in the image's ViewBox, so they zoom with the
image."""

from __future__ import annotations

from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsLineItem, QGraphicsSimpleTextItem

OUTLINE = QColor(255, 255, 255, 220)
MEASURE = QColor(255, 214, 10)


def _pen(colour: QColor, dashed: bool = False) -> QPen:
    pen = QPen(colour, 0)  # cosmetic: one screen pixel wide at any zoom
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    return pen


class BrushCursor(QGraphicsEllipseItem):
    """A circle of the brush's radius centred on the pixel under the mouse.

    In the 2D view, coordinates are pixels: label_ops paints pixels (i, j) within `radius` of
    the point and pixel (i, j) spans [j, j + 1] x [i, i + 1] on screen, so the painted disc is
    centred half a pixel on and reaches half a pixel further (`offset`, `edge` 0.5). A
    three-plane pane's coordinates are mm with pixel centres under the mouse (`offset` 0,
    `edge` half its smaller pixel side)."""

    def __init__(self, offset: float = 0.5, edge: float = 0.5) -> None:
        super().__init__()
        self.setPen(_pen(OUTLINE))
        self.setZValue(100)
        self.setVisible(False)
        self.radius: float = 5
        self.offset, self.edge = offset, edge
        self.centre: tuple[float, float] | None = None

    def set_radius(self, radius: float) -> None:
        self.radius = radius
        self._place()

    def move_to(self, x: float, y: float) -> None:
        self.centre = (x + self.offset, y + self.offset)
        self._place()

    def _place(self) -> None:
        if self.centre is None:
            return
        r = self.radius + self.edge
        cx, cy = self.centre
        self.setRect(QRectF(cx - r, cy - r, 2 * r, 2 * r))


class MeasureItems:
    """A ruler line or an ROI ellipse with its reading beside it."""

    def __init__(self, box) -> None:
        self.line = QGraphicsLineItem()
        self.line.setPen(_pen(MEASURE))
        self.ellipse = QGraphicsEllipseItem()
        self.ellipse.setPen(_pen(MEASURE))
        self.label = QGraphicsSimpleTextItem()
        self.label.setBrush(MEASURE)
        self.label.setFlag(QGraphicsSimpleTextItem.GraphicsItemFlag.ItemIgnoresTransformations)
        for item in (self.line, self.ellipse, self.label):
            item.setZValue(101)
            item.setVisible(False)
            box.addItem(item)

    def show_line(self, x0: float, y0: float, x1: float, y1: float, text: str) -> None:
        self.ellipse.setVisible(False)
        self.line.setLine(QLineF(x0, y0, x1, y1))
        self.line.setVisible(True)
        self._label(x1, y1, text)

    def show_ellipse(self, x0: float, y0: float, x1: float, y1: float, text: str) -> None:
        self.line.setVisible(False)
        self.ellipse.setRect(QRectF(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
        self.ellipse.setVisible(True)
        self._label(max(x0, x1), max(y0, y1), text)

    def _label(self, x: float, y: float, text: str) -> None:
        self.label.setText(text)
        self.label.setPos(x + 2, y + 2)
        self.label.setVisible(bool(text))

    def hide(self) -> None:
        for item in (self.line, self.ellipse, self.label):
            item.setVisible(False)


class KeptMeasures:
    """The measurements kept with the image (`workspace.measurements`): each ruler or ellipse
    with its reading, drawn until the image changes."""

    def __init__(self, box) -> None:
        self.box = box
        self.items: list = []

    def show(self, found: list) -> None:
        """Draw `found` (imaging.measure.Measurement), replacing what was drawn."""
        self.clear()
        for m in found:
            y0, x0, y1, x1 = m.points
            if m.kind == "ruler":
                shape = QGraphicsLineItem(QLineF(x0, y0, x1, y1))
            else:
                shape = QGraphicsEllipseItem(
                    QRectF(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
                )
            shape.setPen(_pen(MEASURE))
            label = QGraphicsSimpleTextItem(m.text.split("  ")[0])
            label.setBrush(MEASURE)
            label.setFlag(QGraphicsSimpleTextItem.GraphicsItemFlag.ItemIgnoresTransformations)
            label.setPos(max(x0, x1) + 2, max(y0, y1) + 2)
            for item in (shape, label):
                item.setZValue(101)
                self.box.addItem(item)
                self.items.append(item)

    def clear(self) -> None:
        for item in self.items:
            self.box.removeItem(item)
        self.items = []
