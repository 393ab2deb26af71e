"""The volume under review in three planes: loads it off the GUI thread, holds the crosshair,
the one window/level, strokes (one undo step each, over `stacked(labels)`) and autosave of the
changed slices in one transaction (`workspace.volume_review`)."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from medviewer.editing import label_ops
from medviewer.editing.history import UndoHistory
from medviewer.editing.plane_edits import write_plane
from medviewer.editing.volume_edits import stacked
from medviewer.imaging.display import Window
from medviewer.imaging.reslice import PlaneName, Voxel
from medviewer.workspace.volume_review import VolumeReview, load_volume_review, save_volume_edit

if TYPE_CHECKING:
    from medviewer.qt.workers import Workers
    from medviewer.workspace import Workspace

AUTOSAVE_MS = 1500  # as the 2D review: at most ~2 s of work unsaved
RETRY_MS = 5000


class VolumeController(QObject):
    sig_loaded = Signal(object)  # VolumeReview
    sig_failed = Signal(str)
    sig_crosshair_changed = Signal(object)  # Voxel
    sig_window_changed = Signal(object)  # Window
    sig_labels_changed = Signal()  # the label volume changed (stroke end, undo, redo)
    sig_drawn = Signal(str, object, object)  # plane, the stroke's drawing, rect in it
    sig_saved = Signal(float)
    sig_save_failed = Signal(str)

    def __init__(self, ws: Workspace, workers: Workers, loader, author: str) -> None:
        super().__init__()
        self.ws = ws
        self.workers = workers
        self.loader = loader
        self.author = author
        self.review: VolumeReview | None = None
        self.crosshair: Voxel = (0, 0, 0)
        self.window: Window | None = None
        self.history: UndoHistory | None = None
        self.pending_id: int | None = None
        self.dirty: set[int] = set()  # slices edited since their last save (maybe undone)
        self.save_error: str | None = None
        self.last_saved: float | None = None
        self._saving = False
        # plane, its drawing, value, radius (mm), the last point, the plane's pixel spacing
        self._stroke: tuple[PlaneName, np.ndarray, int, float, tuple[float, float], tuple] | None
        self._stroke = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.save_now)

    # -- loading -----------------------------------------------------------------------

    def open(self, image_id: int) -> Future:
        """Load the volume holding `image_id` on the loader pool; the crosshair on its slice."""
        self.flush()
        self.pending_id = image_id
        return self.workers.load(
            load_volume_review, self.ws, image_id, self.loader, then=self._loaded
        )

    def _loaded(self, future: Future) -> None:
        try:
            review = future.result()
        except Exception as e:  # noqa: BLE001 - shown to the user; the 2D view goes on
            self.sig_failed.emit(str(e))
            return
        if self.pending_id not in review.image_ids:
            return  # another volume was asked for meanwhile
        self.review = review
        self.history = UndoHistory(stacked(review.labels))
        self.dirty.clear()
        centre = review.reslicer.centre()
        self.crosshair = (review.slice_of(self.pending_id), centre[1], centre[2])
        self.window = review.window
        self.sig_loaded.emit(review)

    def close(self) -> None:
        """Leave the volume (saved first, and waited for)."""
        self.flush()
        self.review, self.history, self.pending_id = None, None, None

    # -- navigation and display --------------------------------------------------------

    def set_crosshair(self, voxel: Voxel) -> None:
        if self.review is None:
            return
        self.crosshair = tuple(int(v) for v in voxel)  # type: ignore[assignment]
        self.sig_crosshair_changed.emit(self.crosshair)

    def click(self, plane: PlaneName, row: float, column: float) -> None:
        """A click in a plane: the crosshair to that voxel, the other planes follow."""
        if self.review is not None:
            self.set_crosshair(self.review.reslicer.voxel_at(plane, row, column, self.crosshair))

    def scroll(self, plane: PlaneName, steps: int) -> None:
        """Wheel in a plane: its neighbouring slice (a view of the volume: cheap)."""
        if self.review is not None:
            self.set_crosshair(self.review.reslicer.scroll(plane, self.crosshair, steps))

    def set_window(self, window: Window) -> None:
        self.window = window
        self.sig_window_changed.emit(window)

    # -- strokes -----------------------------------------------------------------------

    def begin_stroke(self, plane: PlaneName, value: int, radius: float, y: float, x: float) -> None:
        """Press: the stroke is drawn on a copy of the plane until release. `radius` in mm:
        the brush is round in every plane, whatever the slice spacing."""
        if self.review is None:
            return
        view = self.review.reslicer.plane(self.review.labels, plane, self.crosshair)
        drawn = np.array(view.pixels)
        self._stroke = (plane, drawn, int(value), float(radius), (y, x), view.spacing)
        self.extend_stroke(y, x)

    def brush_mm(self, radius_px: int) -> float:
        """The 2D view's brush radius (pixels of a slice) in mm, as its status shows it."""
        if self.review is None:
            return float(radius_px)
        _, row, column = self.review.reslicer.axes.spacing
        return radius_px * min(row, column)

    def extend_stroke(self, y: float, x: float) -> None:
        if self._stroke is None:
            return
        plane, drawn, value, radius, last, spacing = self._stroke
        rect = label_ops.stroke(drawn, [last, (y, x)], radius, value, spacing=spacing)
        self._stroke = (plane, drawn, value, radius, (y, x), spacing)
        if rect is not None:
            self.sig_drawn.emit(plane, drawn, rect)

    def end_stroke(self, y: float, x: float) -> None:
        """Release: the stroke into the label volume as one undo step, however many slices."""
        if self._stroke is None or self.review is None or self.history is None:
            self._stroke = None
            return
        self.extend_stroke(y, x)
        plane, drawn, *_ = self._stroke
        self._stroke = None
        review = self.review
        with self.history.step():
            box = write_plane(
                review.labels, review.reslicer, plane, self.crosshair, drawn, self.history.record
            )
        if box is not None:
            self.dirty.update(range(box[0], box[3]))
        self._edited()

    @property
    def in_stroke(self) -> bool:
        return self._stroke is not None

    def undo(self) -> None:
        if self.history is not None and not self.in_stroke:
            self._stacked_changed(self.history.undo())

    def redo(self) -> None:
        if self.history is not None and not self.in_stroke:
            self._stacked_changed(self.history.redo())

    def _stacked_changed(self, rect: tuple[int, int, int, int] | None) -> None:
        if rect is None or self.review is None:
            return
        rows = self.review.labels.shape[1]
        self.dirty.update(range(rect[0] // rows, (rect[2] - 1) // rows + 1))
        self._edited()

    def _edited(self) -> None:
        self.sig_labels_changed.emit()
        self._timer.start(AUTOSAVE_MS)

    # -- saving ------------------------------------------------------------------------

    @property
    def unsaved(self) -> bool:
        return bool(self._changed())

    def _changed(self) -> list[int]:
        """The dirty slices whose labels differ from their last saved mask (an undone edit
        saves nothing)."""
        review = self.review
        if review is None:
            return []
        return sorted(
            k for k in self.dirty if not np.array_equal(review.labels[k], review.states[k].mask)
        )

    def save_now(self) -> Future | None:
        """Queue one save of every changed slice (one transaction) on the saver thread."""
        self._timer.stop()
        review = self.review
        if review is None:
            return None
        if self._saving:
            self._timer.start(AUTOSAVE_MS)  # after the save on its way
            return None
        slices = self._changed()
        if not slices:
            self.dirty.clear()
            return None
        snapshot = review.labels[slices].copy()  # edits may go on while it saves
        self._saving = True

        def done(f: Future) -> None:
            self._saving = False
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - disk full, read-only folder, ...
                self.save_error = str(e)
                self.sig_save_failed.emit(str(e))
                self._timer.start(RETRY_MS)
                return
            for i, k in enumerate(slices):
                review.states[k].mask = snapshot[i]
            self.dirty.difference_update(slices)
            self.save_error = None
            self.last_saved = time.time()
            self.sig_saved.emit(self.last_saved)
            if self._changed():
                self._timer.start(AUTOSAVE_MS)

        return self.workers.save(
            save_volume_edit, self.ws, review, slices, snapshot, self.author, then=done
        )

    def flush(self) -> None:
        """Save and wait (leaving the volume, closing the window): nothing is lost."""
        self.save_now()
        self.workers.saver.submit(lambda: None).result()
