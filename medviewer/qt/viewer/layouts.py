"""The central area's layouts: one 2D view, three planes, or 2x2 (three planes and a pane
describing the volume). The widgets are moved between grid cells, never rebuilt; the cells are
sized so each plane shows as large as its physical aspect allows in the space there is
(`arrange`: for three planes, the best of a row, a column, axial large beside or above the
other two; for 2x2, the split of columns and rows)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from medviewer.qt import keymap
from medviewer.qt.viewer.mpr_view import MprView

LAYOUTS: dict[str, str] = {"single": "1 view", "mpr": "3 planes", "2x2": "2x2"}
TITLE_PX = 20  # a pane's title line above its image
_FRACTIONS = [k / 40 for k in range(8, 33)]  # the splits tried: 0.2 .. 0.8


@dataclass(frozen=True)
class Arrangement:
    """Cells (row, column, row span, column span) per widget and the grid's stretches."""

    cells: dict[str, tuple[int, int, int, int]]
    columns: tuple[float, ...]  # fractions of the width
    rows: tuple[float, ...]  # fractions of the height

    def fit(
        self, planes: dict[str, tuple[float, float]], size: tuple[int, int]
    ) -> tuple[float, float]:
        """(the smallest plane's scale, screen pixels the planes cover): each plane scaled to
        fit its cell at its aspect, in screen pixels per mm."""
        scales, total = [], 0.0
        for name, (row, col, rspan, cspan) in self.cells.items():
            if name not in planes:
                continue
            w = size[0] * sum(self.columns[col : col + cspan])
            h = size[1] * sum(self.rows[row : row + rspan]) - TITLE_PX
            pw, ph = planes[name]
            scale = max(0.0, min(w / pw, h / ph))
            scales.append(scale)
            total += scale * scale * pw * ph
        return round(min(scales, default=0.0), 2), total


def _candidates(name: str) -> list[Arrangement]:
    if name == "single":
        return [Arrangement({"view": (0, 0, 1, 1)}, (1.0,), (1.0,))]
    if name == "2x2":
        cells = {"axial": (0, 0, 1, 1), "coronal": (0, 1, 1, 1)}
        cells |= {"sagittal": (1, 0, 1, 1), "info": (1, 1, 1, 1)}
        return [Arrangement(cells, (a, 1 - a), (b, 1 - b)) for a in _FRACTIONS for b in _FRACTIONS]
    row = {"axial": (0, 0, 1, 1), "coronal": (0, 1, 1, 1), "sagittal": (0, 2, 1, 1)}
    column = {"axial": (0, 0, 1, 1), "coronal": (1, 0, 1, 1), "sagittal": (2, 0, 1, 1)}
    beside = {"axial": (0, 0, 2, 1), "coronal": (0, 1, 1, 1), "sagittal": (1, 1, 1, 1)}
    above = {"axial": (0, 0, 1, 2), "coronal": (1, 0, 1, 1), "sagittal": (1, 1, 1, 1)}
    out: list[Arrangement] = []
    for a in _FRACTIONS:
        for b in _FRACTIONS:
            if a + b < 0.9:
                out.append(Arrangement(row, (a, b, 1 - a - b), (1.0,)))
                out.append(Arrangement(column, (1.0,), (a, b, 1 - a - b)))
        for b in _FRACTIONS:
            out.append(Arrangement(beside, (a, 1 - a), (b, 1 - b)))
            out.append(Arrangement(above, (b, 1 - b), (a, 1 - a)))
    return out


def arrange(
    name: str, planes: dict[str, tuple[float, float]], size: tuple[int, int]
) -> Arrangement:
    """The arrangement of layout `name` that shows the planes largest in `size` (width,
    height in screen pixels): the one whose smallest plane scale (pixels per mm) is largest, so
    the three can show at one scale, then the one covering most; `planes`: each plane's
    (width, height) in mm."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; one of {', '.join(LAYOUTS)}")
    candidates = _candidates(name)
    return max(candidates, key=lambda a: a.fit(planes, size))


class LayoutHost(QWidget):
    """Holds the 2D view and the three panes and shows those a layout names."""

    def __init__(self, view: QWidget, mpr: MprView) -> None:
        super().__init__()
        self.mpr = mpr
        self.info = QLabel("")
        self.info.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.info.setWordWrap(True)
        self.widgets: dict[str, QWidget] = {"view": view, "info": self.info, **mpr.panes}
        for widget in self.widgets.values():
            widget.setMinimumSize(40, 40)  # the stretches decide, not the size hints
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.name = ""
        self.arrangement: Arrangement | None = None
        mpr.volume.sig_loaded.connect(lambda _: self._arrange())
        self.show_layout("single")

    def planes_mm(self) -> dict[str, tuple[float, float]]:
        """Each plane's (width, height) in mm (square until a volume is loaded)."""
        out = {}
        for name, pane in self.mpr.panes.items():
            rows, columns = pane.shape
            out[name] = (columns * pane.spacing[1], rows * pane.spacing[0]) if rows else (1, 1)
        return out

    def show_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}; one of {', '.join(LAYOUTS)}")
        self.name = name
        self._arrange()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self.name != "single":
            self._arrange()

    def _arrange(self) -> None:
        if not self.name:
            return
        a = arrange(self.name, self.planes_mm(), (max(self.width(), 1), max(self.height(), 1)))
        if a == self.arrangement and all(self.widgets[k].isVisible() for k in a.cells):
            return
        self.arrangement = a
        for widget in self.widgets.values():
            self.grid.removeWidget(widget)
            widget.hide()
        for r in range(3):
            self.grid.setRowStretch(r, 0)
            self.grid.setColumnStretch(r, 0)
        for c, f in enumerate(a.columns):
            self.grid.setColumnStretch(c, max(1, round(f * 1000)))
        for r, f in enumerate(a.rows):
            self.grid.setRowStretch(r, max(1, round(f * 1000)))
        for key, (row, column, rspan, cspan) in a.cells.items():
            widget = self.widgets[key]
            self.grid.addWidget(widget, row, column, rspan, cspan)
            widget.show()
        QTimer.singleShot(0, self._fit_planes)  # once the cells have their new sizes

    def _fit_planes(self) -> None:
        """Each shown plane fitted to its pane, and kept fitted as the pane resizes until the
        clinician zooms or pans (pyqtgraph's auto range; a new cell would crop it otherwise)."""
        for pane in self.mpr.panes.values():
            if pane.isVisible() and pane.pixels is not None:
                pane.box.setDefaultPadding(0)
                pane.box.enableAutoRange()


def layout_actions(parent: QWidget, choose: Callable[[str], None]) -> dict[str, QAction]:
    """Checkable, exclusive actions for the layouts, with the shortcut table's keys
    (`keymap`: layout_single, layout_mpr, layout_2x2), for a toolbar or menu to place."""
    group = QActionGroup(parent)
    actions: dict[str, QAction] = {}
    for name, text in LAYOUTS.items():
        action = QAction(text, parent, checkable=True)
        keymap.bind(action, f"layout_{name}")
        action.triggered.connect(lambda _=False, n=name: choose(n))
        group.addAction(action)
        actions[name] = action
    actions["single"].setChecked(True)
    return actions
