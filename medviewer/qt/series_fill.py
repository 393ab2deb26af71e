"""Fill between slices for the series on screen: the series' masks as one label volume,
`editing.interpolate.fill_between` computed off the GUI thread, previewed as contours on the
slice shown, then accepted as ONE undo step (`UndoHistory` over `volume_edits.stacked`) and
saved as one transaction (`save_mask_edits`), or discarded."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, Signal

from medviewer.editing.errors import EditInputError
from medviewer.editing.history import UndoHistory
from medviewer.editing.interpolate import fill_between
from medviewer.editing.volume_edits import VolumeChange, stacked
from medviewer.qt.viewer.overlay import OverlayItem
from medviewer.workspace import ImageQuery
from medviewer.workspace.review_state import ReviewState, load_review, save_mask_edits

if TYPE_CHECKING:
    from medviewer.qt.review import ReviewController
    from medviewer.qt.viewer.image_view import ImageView

PREVIEW_COLOUR = (255, 214, 10)


@dataclass
class _Series:
    ids: list[int]
    states: list[ReviewState]
    volume: np.ndarray  # (slices, rows, columns) uint8, C-contiguous
    change: VolumeChange | None = None


@dataclass
class _Accepted:
    series: _Series
    history: UndoHistory
    session_version: int  # the on-screen session's version right after the fill


class SeriesFill(QObject):
    sig_message = Signal(str)
    sig_previewing = Signal(bool)

    def __init__(self, review: ReviewController, view: ImageView) -> None:
        super().__init__(view)  # goes with the view and its overlay item
        self.review = review
        self.view = view
        self.item = OverlayItem()
        self.item.setZValue(50)
        self.item.set_contours(True)
        view.box.addItem(self.item)
        self.pending: _Series | None = None
        self.accepted: _Accepted | None = None
        self.busy = False
        review.sig_loaded.connect(self._loaded)  # a slot of this object: gone with it

    # -- preview ---------------------------------------------------------------------------

    def preview(self) -> Future | None:
        """Compute the fill for the series on screen (in the background); shown when ready."""
        state, session = self.review.state, self.review.session
        if state is None or session is None or self.busy:
            return None
        self.discard()
        ws = self.review.ws
        current = (state, session.mask.copy())
        spacing = self.view.image.pixel_spacing if self.view.image is not None else None
        self.busy = True
        self.sig_message.emit("Fill between slices: computing\u2026")
        return self.review.workers.load(
            _compute, ws, self.review.resolver, current, spacing, then=self._computed
        )

    def _computed(self, future: Future) -> None:
        self.busy = False
        try:
            series = future.result()
        except (EditInputError, ValueError) as e:
            self.sig_message.emit(f"Fill between slices: {e}")
            return
        if series.change is None:
            self.sig_message.emit(
                "Fill between slices: nothing to fill (draw a class on two slices with "
                "undrawn slices between)"
            )
            return
        self.pending = series
        slices = series.change.slices
        self.sig_message.emit(
            f"Fill between slices: {series.change.voxels} pixels on slices {slices[0] + 1}-"
            f"{slices[-1] + 1}; Return accepts, Escape discards"
        )
        self.sig_previewing.emit(True)
        self._show_slice()

    def _loaded(self, *_: object) -> None:
        self._show_slice()

    def _show_slice(self) -> None:
        series, state = self.pending, self.review.state
        shown_here = state is not None and series is not None and state.image.id in series.ids
        if series is None or series.change is None or state is None or not shown_here:
            self.item.set_mask(None, [])
            return
        k = series.ids.index(state.image.id)
        s0, r0, c0, s1, r1, c1 = series.change.box
        shown = np.zeros(series.volume.shape[1:], np.uint8)
        if s0 <= k < s1:
            shown[r0:r1, c0:c1] = np.where(series.change.values[k - s0] != 0, 1, 0)
        self.item.set_mask(shown, [(0, 0, 0), PREVIEW_COLOUR])

    def discard(self) -> bool:
        had = self.pending is not None
        self.pending = None
        self.item.set_mask(None, [])
        if had:
            self.sig_previewing.emit(False)
            self.sig_message.emit("Fill between slices: discarded")
        return had

    # -- accept and undo ---------------------------------------------------------------------

    def accept(self) -> bool:
        """Write the previewed fill into every slice as one undo step; save them together."""
        series, session, state = self.pending, self.review.session, self.review.state
        if series is None or series.change is None or session is None or state is None:
            return False
        self.pending = None
        self.item.set_mask(None, [])
        self.sig_previewing.emit(False)
        history = UndoHistory(stacked(series.volume), max_steps=1, max_bytes=2**40)
        with history.step():
            series.change.apply(series.volume, history.record)
        self._write(series, series.change.slices)
        self.accepted = _Accepted(series, history, session.version)
        self.sig_message.emit(
            f"Fill between slices: {len(series.change.slices)} slices filled (Ctrl+Z undoes it)"
        )
        return True

    def can_undo(self) -> bool:
        """The fill is the last edit made on screen (any stroke since makes Ctrl+Z its own)."""
        a, session = self.accepted, self.review.session
        return a is not None and session is not None and session.version == a.session_version

    def undo(self) -> bool:
        a = self.accepted
        if a is None or not self.can_undo():
            return False
        self.accepted = None
        if a.history.undo() is not None and a.series.change is not None:
            self._write(a.series, a.series.change.slices)
        self.sig_message.emit("Fill between slices: undone")
        return True

    def _write(self, series: _Series, slices: list[int]) -> None:
        """The slices' masks as they now are in the volume: the one on screen through its
        session (so it repaints), all of them saved as one transaction."""
        session, state = self.review.session, self.review.state
        edits = []
        version = 0
        for k in slices:
            image_id = series.ids[k]
            if state is not None and session is not None and image_id == state.image.id:
                new = series.volume[k]
                rect = session.edit(lambda m, rec, new=new: _copy_into(m, new, rec))
                self.review.sig_mask_changed.emit(rect)
                edits.append((state, session.mask.copy()))
                version = session.version
            else:
                edits.append((series.states[k], series.volume[k].copy()))
        if not edits:
            return
        ws, author = self.review.ws, self.review.author

        def done(f: Future) -> None:
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - disk full, read-only folder: say so
                self.sig_message.emit(f"Fill between slices NOT saved: {e}")
                return
            if session is not None and any(s is state for s, _ in edits):
                session.mark_saved(min(version, session.version))
            for s, _ in edits:
                self.review.sig_row_changed.emit(s.image.id)

        self.review.workers.save(save_mask_edits, ws, edits, author, then=done)


def _copy_into(mask: np.ndarray, new: np.ndarray, before_write) -> tuple[int, int, int, int] | None:
    """Make `mask` equal `new` (label_ops' convention: before_write, then write)."""
    changed = mask != new
    ys = np.flatnonzero(changed.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(changed.any(axis=0))
    rect = (int(ys[0]), int(xs[0]), int(ys[-1]) + 1, int(xs[-1]) + 1)
    tight = changed[rect[0] : rect[2], rect[1] : rect[3]]
    before_write(rect, tight)
    box = (slice(rect[0], rect[2]), slice(rect[1], rect[3]))
    mask[box][tight] = new[box][tight]
    return rect


def _compute(ws, resolver, current, spacing) -> _Series:
    """The series' masks stacked (the slice on screen as it is now) and the fill's change."""
    state, mask = current
    rows = ws.images(ImageQuery(series_uid=state.image.series_uid))
    ids = [r.id for r in rows]
    states, masks = [], []
    for image_id in ids:
        s = state if image_id == state.image.id else load_review(ws, image_id, resolver)
        m = mask if image_id == state.image.id else s.mask
        if m.shape != mask.shape:
            raise EditInputError(
                f"the series' slices differ in size ({m.shape} and {mask.shape}): no volume to fill"
            )
        states.append(s)
        masks.append(m)
    volume = np.ascontiguousarray(np.stack(masks))
    sp = (float(spacing[0]), float(spacing[1])) if spacing else (1.0, 1.0)
    return _Series(ids, states, volume, fill_between(volume, 0, sp))
