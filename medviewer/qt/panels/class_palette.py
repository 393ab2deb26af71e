"""The class palette: colour, name and key (1-9) of each class, the one being painted
highlighted; a click chooses the class as its key does. Under it, each class's area on the
slice (mm^2) and volume over the series (mL); for an image whose models only classify, no
classes but what its classifier says."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QVBoxLayout,
)

from medviewer.workspace.classes import Palette

MAX_CLASSES = 9  # the keys 1-9
SWATCH = 14


def swatch(rgb: tuple[int, int, int]) -> QIcon:
    pix = QPixmap(SWATCH, SWATCH)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setPen(QColor(0, 0, 0, 160))
    painter.setBrush(QColor(*rgb))
    painter.drawRoundedRect(0, 0, SWATCH - 1, SWATCH - 1, 3, 3)
    painter.end()
    return QIcon(pix)


class ClassPalette(QGroupBox):
    sig_class_chosen = Signal(int)  # class value

    def __init__(self) -> None:
        super().__init__("Classes")
        self.list = QListWidget()
        self.list.setIconSize(QSize(SWATCH, SWATCH))
        self.list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the image
        self.list.itemClicked.connect(
            lambda item: self.sig_class_chosen.emit(int(item.data(Qt.ItemDataRole.UserRole)))
        )
        self.none_text = QLabel("")  # why there are no classes to paint
        self.none_text.setWordWrap(True)
        self.none_text.hide()
        self.sizes = QLabel("")  # area on the slice, volume over the series, per class
        self.sizes.setWordWrap(True)
        self.sizes.setTextFormat(Qt.TextFormat.PlainText)
        layout = QVBoxLayout(self)
        layout.addWidget(self.none_text)
        layout.addWidget(self.list)
        layout.addWidget(self.sizes)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._palette: Palette | None = None
        self.active = 1

    def show_palette(self, palette: Palette) -> None:
        """The classes of the mask on screen (at least up to the active one)."""
        self._palette = palette
        self.none_text.hide()
        self.list.show()
        self._fill()

    def show_no_classes(self, why: str) -> None:
        """No segmentation classes (e.g. the image's only model is a classifier): say so,
        rather than offer a made-up 'Class 1'."""
        self._palette = None
        self.list.clear()
        self.list.hide()
        self.sizes.setText("")
        self.none_text.setText(why)
        self.none_text.show()

    def show_sizes(
        self, areas: dict[int, float], area_unit: str, volumes: dict[int, float] | None
    ) -> None:
        """'Lung  1234 mm² · 45.6 mL' per class present on the slice or in the series."""
        if self._palette is None:
            self.sizes.setText("")
            return
        values = sorted(set(areas) | set(volumes or {}))
        pal = self._palette.extended(max(values, default=0) + 1)
        unit = "mm\u00b2" if area_unit == "mm2" else "px"
        lines = []
        for v in values:
            parts = [f"{areas.get(v, 0.0):.0f} {unit}"]
            if volumes is not None:
                parts.append(f"{volumes.get(v, 0.0):.2f} mL")
            lines.append(f"{pal.names[v]}  " + " \u00b7 ".join(parts))
        self.sizes.setText("\n".join(lines))

    def set_active(self, value: int) -> None:
        self.active = value
        self._fill()

    def active_name(self) -> str:
        item = self.list.currentItem()
        return item.text().split("  ", 1)[-1] if item is not None else ""

    def _fill(self) -> None:
        if self._palette is None:
            return
        count = min(max(len(self._palette.names), self.active + 1), MAX_CLASSES + 1)
        pal = self._palette.extended(count)
        self.list.clear()
        for value in range(1, count):
            item = QListWidgetItem(swatch(pal.colors[value]), f"{value}  {pal.names[value]}")
            item.setData(Qt.ItemDataRole.UserRole, value)
            item.setToolTip(f"Paint {pal.names[value]} (key {value})")
            self.list.addItem(item)
            if value == self.active:
                item.setSelected(True)
                self.list.setCurrentItem(item)
        rows = max(self.list.count(), 1)
        self.list.setFixedHeight(rows * (self.list.sizeHintForRow(0) + 2) + 6)
