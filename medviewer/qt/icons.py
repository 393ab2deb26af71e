"""Icons for tools and actions (Material Design Icons through qtawesome, whose fonts ship
with it: no network). Drawn in the palette's text colour, so they follow the theme."""

from __future__ import annotations

from PySide6.QtGui import QAction, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QWidget

# command (qt/keymap.py, or an action without a key) -> Material Design Icons 6 name
NAMES = {
    "brush": "mdi6.brush",
    "eraser": "mdi6.eraser",
    "polygon": "mdi6.vector-polygon",
    "fill": "mdi6.format-color-fill",
    "threshold": "mdi6.brush-variant",
    "grow": "mdi6.sprout",
    "trace": "mdi6.vector-curve",
    "ruler": "mdi6.ruler",
    "roi": "mdi6.ellipse-outline",
    "click": "mdi6.cursor-default-click",
    "undo": "mdi6.undo",
    "redo": "mdi6.redo",
    "save": "mdi6.content-save",
    "fill_between": "mdi6.layers-triple",
    "overlays": "mdi6.layers-outline",
    "heatmap": "mdi6.fire",
    "contours": "mdi6.vector-selection",
    "compare": "mdi6.select-compare",
    "reset_view": "mdi6.fit-to-screen",
    "cheat_sheet": "mdi6.keyboard",
    "next": "mdi6.skip-next",
    "previous": "mdi6.skip-previous",
    "approve": "mdi6.check-circle",
    "reject": "mdi6.close-circle",
    "accept_ai": "mdi6.robot",
    "islands": "mdi6.broom",
    "clear": "mdi6.delete-sweep",
    "retrain": "mdi6.school",
    "window": "mdi6.contrast-box",
    "pacs_open": "mdi6.cloud-download",
    "pacs_send": "mdi6.cloud-upload",
    "theme": "mdi6.theme-light-dark",
    "layout_single": "mdi6.square-outline",
    "layout_mpr": "mdi6.view-column-outline",
    "layout_2x2": "mdi6.view-grid-outline",
}
# Review verdicts keep their meaning in any theme.
FIXED_COLOURS = {"approve": "#3fb950", "reject": "#f85149"}
_PROPERTY = "medviewer_icon"


def icon(command: str) -> QIcon:
    """The command's icon in the current palette's text colour; an empty icon if it has none
    (or qtawesome cannot draw it: the text still shows)."""
    name = NAMES.get(command)
    if name is None:
        return QIcon()
    import qtawesome

    colour = FIXED_COLOURS.get(command) or _text_colour()
    try:
        return qtawesome.icon(name, color=colour, color_disabled="#777777")
    except Exception:  # noqa: BLE001 - an icon is decoration: never fail an action for it
        return QIcon()


def attach(action: QAction, command: str) -> None:
    """Give the action its icon and remember which, so `refresh` can redraw it."""
    if command in NAMES:
        action.setProperty(_PROPERTY, command)
        action.setIcon(icon(command))


def refresh(root: QWidget) -> None:
    """Redraw every icon under `root` in the palette's colours (after a theme change)."""
    for action in root.findChildren(QAction):
        command = action.property(_PROPERTY)
        if command:
            action.setIcon(icon(str(command)))


def _text_colour() -> str:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return "#444444"
    return app.palette().color(QPalette.ColorRole.ButtonText).name()
