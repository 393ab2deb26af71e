"""Correcting label maps without Qt: brush, eraser, polygon, flood fill, small-island removal,
accept/clear, and a bounded undo history that stores changed tiles, not whole copies.

`EditSession` is what the viewer drives; `tools` and `UndoHistory` are its parts.
"""

from medviewer.editing.history import UndoHistory
from medviewer.editing.session import EditSession
from medviewer.editing.tools import (
    Rect,
    accept,
    brush,
    clear,
    fill_polygon,
    flood_fill,
    remove_islands,
    stroke,
)

__all__ = [
    "EditSession",
    "Rect",
    "UndoHistory",
    "accept",
    "brush",
    "clear",
    "fill_polygon",
    "flood_fill",
    "remove_islands",
    "stroke",
]
