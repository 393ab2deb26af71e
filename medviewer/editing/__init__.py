"""Correcting label maps without Qt: brush, eraser, polygon, flood fill, small-island removal,
accept/clear, and a bounded undo history that stores changed tiles, not whole copies.

`EditSession` is what the viewer drives; `label_ops` and `UndoHistory` are its parts.
"""

from medviewer.editing.history import UndoHistory
from medviewer.editing.label_ops import (
    Rect,
    accept,
    brush,
    clear,
    fill_polygon,
    flood_fill,
    remove_islands,
    stroke,
)
from medviewer.editing.session import EditSession

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
