"""The central area's layouts: one 2D view, three planes side by side, or 2x2 (three planes and
a pane describing the volume). The widgets are moved between grid cells, never rebuilt."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from medviewer.qt.viewer.mpr_view import MprView

LAYOUTS: dict[str, str] = {"single": "1 view", "mpr": "3 planes", "2x2": "2x2"}
_KEYS = {"single": "Ctrl+1", "mpr": "Ctrl+3", "2x2": "Ctrl+4"}
# Grid cells (row, column) per layout; absent: hidden.
_CELLS: dict[str, dict[str, tuple[int, int]]] = {
    "single": {"view": (0, 0)},
    "mpr": {"axial": (0, 0), "coronal": (0, 1), "sagittal": (0, 2)},
    "2x2": {"axial": (0, 0), "coronal": (0, 1), "sagittal": (1, 0), "info": (1, 1)},
}


class LayoutHost(QWidget):
    """Holds the 2D view and the three panes and shows those a layout names."""

    def __init__(self, view: QWidget, mpr: MprView) -> None:
        super().__init__()
        self.mpr = mpr
        self.info = QLabel("")
        self.info.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.info.setWordWrap(True)
        self.widgets: dict[str, QWidget] = {"view": view, "info": self.info, **mpr.panes}
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.name = ""
        self.show_layout("single")

    def show_layout(self, name: str) -> None:
        if name not in _CELLS:
            raise ValueError(f"unknown layout {name!r}; one of {', '.join(_CELLS)}")
        for widget in self.widgets.values():
            self.grid.removeWidget(widget)
            widget.hide()
        for r in range(3):
            self.grid.setRowStretch(r, 0)
            self.grid.setColumnStretch(r, 0)
        for key, (row, column) in _CELLS[name].items():
            widget = self.widgets[key]
            self.grid.addWidget(widget, row, column)
            self.grid.setRowStretch(row, 1)
            self.grid.setColumnStretch(column, 1)
            widget.show()
        self.name = name


def layout_actions(parent: QWidget, choose: Callable[[str], None]) -> dict[str, QAction]:
    """Checkable, exclusive actions for the layouts (Ctrl+1 / Ctrl+3 / Ctrl+4), for a toolbar
    or menu to place."""
    group = QActionGroup(parent)
    actions: dict[str, QAction] = {}
    for name, text in LAYOUTS.items():
        action = QAction(text, parent, checkable=True)
        action.setShortcut(QKeySequence(_KEYS[name]))
        action.setToolTip(f"Layout: {text} ({_KEYS[name]})")
        action.triggered.connect(lambda _=False, n=name: choose(n))
        group.addAction(action)
        actions[name] = action
    actions["single"].setChecked(True)
    return actions
