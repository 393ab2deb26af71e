"""The one table of keyboard shortcuts: the window binds its keys from it, the tooltips quote
it and the cheat sheet (F1) lists it, so the three can never disagree.

Keys follow the habits radiology viewers share (Slicer, ITK-SNAP, OHIF) and the design's list:
B / E / P / F for brush, eraser, polygon, fill, [ and ] for the brush size, 1-9 for the class,
Space for the overlays, N / Shift+N for the next / previous image, A / R to approve / reject.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from medviewer.qt import icons


@dataclass(frozen=True)
class Shortcut:
    command: str  # what the window binds a slot to
    keys: tuple[str, ...]  # QKeySequence strings; the first is the one tooltips show
    text: str  # what it does, as the menu, tooltip and cheat sheet say it
    group: str  # the cheat sheet's heading


def _s(command: str, keys: str | tuple[str, ...], text: str, group: str) -> Shortcut:
    return Shortcut(command, (keys,) if isinstance(keys, str) else keys, text, group)


TOOLS = "Tools"
EDIT = "Edit"
VIEW = "View"
NAVIGATE = "Navigate"
REVIEW = "Review"

SHORTCUTS: tuple[Shortcut, ...] = (
    _s("brush", "B", "Brush", TOOLS),
    _s("eraser", "E", "Eraser", TOOLS),
    _s("polygon", "P", "Polygon (Return closes, Escape cancels)", TOOLS),
    _s("fill", "F", "Fill a region of similar intensity", TOOLS),
    _s("threshold", "T", "Threshold brush (paints only the clicked intensity range)", TOOLS),
    _s("grow", "G", "Region growing from a click (tolerance slider)", TOOLS),
    _s("trace", "L", "Level tracing: fill the outline at the clicked intensity", TOOLS),
    _s("ruler", "M", "Ruler (mm from Pixel Spacing)", TOOLS),
    _s("roi", "O", "Ellipse ROI: mean, SD, min, max (HU for CT)", TOOLS),
    _s("click", "K", "AI click: left in, right or Ctrl+left out (guided model)", TOOLS),
    _s("class", tuple(str(k) for k in range(1, 10)), "Class to paint (1-9)", EDIT),
    _s("smaller", "[", "Smaller brush", EDIT),
    _s("larger", "]", "Larger brush", EDIT),
    _s("close_polygon", "Return", "Close the polygon / accept fill between slices", EDIT),
    _s("cancel", "Escape", "Cancel the polygon / discard the preview", EDIT),
    _s("click_undo", "Backspace", "AI click: remove the last click", EDIT),
    _s("undo", "Ctrl+Z", "Undo (one stroke at a time)", EDIT),
    _s("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo", EDIT),
    _s("fill_between", "I", "Fill between slices of the series (preview)", EDIT),
    _s("save", "Ctrl+S", "Save now (autosave runs anyway)", EDIT),
    _s("overlays", "Space", "Show / hide the overlays", VIEW),
    _s("heatmap", "H", "Grad-CAM heatmap of the chosen label", VIEW),
    _s("contours", "C", "Mask as contours", VIEW),
    _s("compare", "V", "Show the AI proposal beside your mask", VIEW),
    _s("reset_view", "Ctrl+0", "Fit the image to the view", VIEW),
    _s("layout_single", "Ctrl+1", "Layout: 1 view", VIEW),
    _s("layout_mpr", "Ctrl+3", "Layout: 3 planes of the series' volume", VIEW),
    _s("layout_2x2", "Ctrl+4", "Layout: 2x2 (3 planes and the slice)", VIEW),
    _s("cheat_sheet", "F1", "Keyboard and mouse cheat sheet", VIEW),
    _s("next_slice", ("Down", "PgDown"), "Next slice of the series", NAVIGATE),
    _s("previous_slice", ("Up", "PgUp"), "Previous slice of the series", NAVIGATE),
    _s("next", "N", "Next image in the worklist", NAVIGATE),
    _s("previous", "Shift+N", "Previous image in the worklist", NAVIGATE),
    _s("approve", "A", "Approve: the mask on screen becomes the confirmed truth", REVIEW),
    _s("reject", "R", "Reject the image", REVIEW),
)

# What the mouse does in the image view (qt/viewer/image_view.py ToolViewBox): shown beside
# the keys in the cheat sheet.
MOUSE: tuple[tuple[str, str], ...] = (
    ("Left button", "The active tool"),
    ("Wheel", "Next / previous slice"),
    ("Ctrl+wheel", "Zoom about the cursor"),
    ("Right-drag", "Window / level (across: width, up and down: level)"),
    ("Middle-drag", "Pan"),
)

_BY_COMMAND = {s.command: s for s in SHORTCUTS}


def shortcut(command: str) -> Shortcut:
    try:
        return _BY_COMMAND[command]
    except KeyError:
        raise KeyError(f"no shortcut {command!r}; known: {', '.join(_BY_COMMAND)}") from None


def key_text(command: str) -> str:
    """The keys as a person reads them: 'Ctrl+Shift+Z', '1-9'."""
    s = shortcut(command)
    if s.command == "class":
        return "1-9"
    return " / ".join(
        QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in s.keys
    )


def tooltip(command: str, text: str | None = None) -> str:
    """'Brush (B)': the tool's name with its key, from the table."""
    s = shortcut(command)
    return f"{text or s.text} ({key_text(command)})"


def action(
    parent: QWidget,
    command: str,
    slot: Callable[[], object] | None = None,
    text: str | None = None,
    checkable: bool = False,
) -> QAction:
    """A QAction bound to the table's keys for `command`, with its icon and tooltip.

    `text` is the short label a toolbar or menu shows; the tooltip says what it does and its
    key. The slot gets no arguments (checkable actions read their own state)."""
    a = QAction(text or shortcut(command).text, parent)
    a.setCheckable(checkable)
    bind(a, command)
    if slot is not None:
        a.triggered.connect(lambda _=False: slot())
    return a


def bind(a: QAction, command: str) -> None:
    """Give an action (made here or elsewhere, e.g. the layouts') the table's keys, tooltip
    and icon for `command`."""
    s = shortcut(command)
    a.setObjectName(f"action_{command}")
    a.setShortcuts([QKeySequence(k) for k in s.keys])
    a.setToolTip(tooltip(command))
    a.setStatusTip(s.text)
    icons.attach(a, command)
