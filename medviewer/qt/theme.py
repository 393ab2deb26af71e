"""The app's look: Qt's Fusion style with a dark (the default: images are read in a dim room)
or light palette, applied to the whole application at once, never by per-widget stylesheets."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")
DEFAULT = "dark"
SETTING = "theme"  # the QSettings key that remembers the choice

_DARK = {
    QPalette.ColorRole.Window: "#1e2126",
    QPalette.ColorRole.WindowText: "#d6dae0",
    QPalette.ColorRole.Base: "#15171b",
    QPalette.ColorRole.AlternateBase: "#1b1e23",
    QPalette.ColorRole.ToolTipBase: "#2b3038",
    QPalette.ColorRole.ToolTipText: "#e6e9ee",
    QPalette.ColorRole.PlaceholderText: "#7d848e",
    QPalette.ColorRole.Text: "#d6dae0",
    QPalette.ColorRole.Button: "#272b31",
    QPalette.ColorRole.ButtonText: "#d6dae0",
    QPalette.ColorRole.BrightText: "#ff6b6b",
    QPalette.ColorRole.Light: "#3a3f47",
    QPalette.ColorRole.Midlight: "#30343b",
    QPalette.ColorRole.Mid: "#24272d",
    QPalette.ColorRole.Dark: "#111316",
    QPalette.ColorRole.Shadow: "#000000",
    QPalette.ColorRole.Highlight: "#2f81f7",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#58a6ff",
}
_DISABLED = {
    QPalette.ColorRole.WindowText: "#6b717a",
    QPalette.ColorRole.Text: "#6b717a",
    QPalette.ColorRole.ButtonText: "#6b717a",
    QPalette.ColorRole.Highlight: "#3a3f47",
}


def palette(name: str) -> QPalette:
    """The named theme's palette; ValueError naming the themes for any other name."""
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}; valid: {', '.join(THEMES)}")
    app = QApplication.instance()
    if name == "light":
        # Fusion's own light palette, whatever the desktop's colour scheme is.
        return QApplication.style().standardPalette() if app else QPalette()
    p = QPalette()
    for role, colour in _DARK.items():
        p.setColor(role, QColor(colour))
    for role, colour in _DISABLED.items():
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(colour))
    return p


def apply(name: str) -> None:
    """Fusion style and the named palette for every widget of the application."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    app.setStyle("Fusion")
    app.setPalette(palette(name))


def saved(settings: QSettings) -> str:
    """The theme the user chose last (QSettings; config.py holds no UI settings), else dark."""
    name = str(settings.value(SETTING, DEFAULT))
    return name if name in THEMES else DEFAULT


def is_dark() -> bool:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return False
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128
