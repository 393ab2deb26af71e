"""The image under review: loads it off the GUI thread, routes tool input to the Qt-free edit
session, autosaves (debounced, on navigation, on close) and asks the runner for proposals."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from medviewer.editing.session import EditSession
from medviewer.imaging import Image, render
from medviewer.workspace import PermissionDenied
from medviewer.workspace.classes import ClassResolver
from medviewer.workspace.review_state import (
    ReviewState,
    load_review,
    save_labels_edit,
    save_mask_edit,
)

if TYPE_CHECKING:
    from medviewer.qt.inference import RunnerHost
    from medviewer.qt.workers import Workers
    from medviewer.workspace import Workspace

AUTOSAVE_MS = 1500  # after the last stroke: at most ~2 s of work is ever unsaved
RETRY_MS = 5000  # after a failed save; the edit stays in memory meanwhile
SHOWN_KEPT = 6  # rendered images kept: the current one, the prefetched ones, the last ones


def _nothing() -> None:
    """A no-op queued behind the saves: its Future says when they are done."""


class ReviewController(QObject):
    sig_loaded = Signal(object, object, object)  # ReviewState, Image, render(image) or None
    sig_mask_changed = Signal(object)  # changed rect (y0, x0, y1, x1) or None for everything
    sig_saved = Signal(float)  # when
    sig_save_failed = Signal(str)
    sig_row_changed = Signal(int)  # image id whose worklist row needs refreshing
    sig_error = Signal(str)

    def __init__(self, ws: Workspace, workers: Workers, host: RunnerHost, author: str) -> None:
        super().__init__()
        self.ws = ws
        self.workers = workers
        self.host = host
        self.author = author
        self.loader = host.loader
        self.resolver = ClassResolver(ws)
        self.state: ReviewState | None = None
        self.image: Image | None = None
        self.session: EditSession | None = None
        self.pending_id: int | None = None
        self.last_saved: float | None = None
        self.save_error: str | None = None
        self._saving_version: int | None = None
        self._shown: OrderedDict[str, np.ndarray] = OrderedDict()
        self._shown_lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.save_now)

    # -- navigation --------------------------------------------------------------------

    def open_image(self, image_id: int) -> Future:
        """Save what is open, then load the next image in the background."""
        self.save_now()
        self.pending_id = image_id
        saved = self.workers.saver.submit(_nothing)  # done once the saves queued so far are
        return self.workers.load(self._load, image_id, saved, then=self._loaded)

    def _load(self, image_id: int, saved: Future) -> tuple[ReviewState, Image, np.ndarray]:
        # Back to an image whose save is still queued: read it once that save is in, not the
        # mask from before the clinician's edit.
        saved.result()
        state = load_review(self.ws, image_id, self.resolver)
        image, shown = self._display(image_id)
        return state, image, shown

    def _display(self, image_id: int) -> tuple[Image, np.ndarray]:
        """Decoded pixels and their default rendering, made off the GUI thread and kept for
        the few images around the current one (pixels never change, so neither does this)."""
        image = self.loader.image(self.host.frame_ref(image_id))  # kept: models_for knows it
        with self._shown_lock:
            shown = self._shown.get(image.source)
        if shown is None:
            shown = render(image)
            with self._shown_lock:
                self._shown[image.source] = shown
                while len(self._shown) > SHOWN_KEPT:
                    self._shown.popitem(last=False)
        return image, shown

    def _loaded(self, future: Future) -> None:
        try:
            state, image, shown = future.result()
        except Exception as e:  # noqa: BLE001 - shown to the user; the app keeps working
            self.sig_error.emit(str(e))
            return
        if state.image.id != self.pending_id:
            return  # the clinician already moved on
        self.state, self.image = state, image
        self.session = EditSession(state.mask, state.proposal)
        self.sig_loaded.emit(state, image, shown)
        self.host.propose(state.image.id, on_screen=True, then=self._proposal_ready)

    def prefetch(self, image_ids: list[int]) -> None:
        """Decode the next images into the cache and queue their proposals behind this one."""
        for image_id in image_ids:
            self.workers.loader.submit(self._display, image_id)
            self.host.propose(image_id, on_screen=False, then=self._proposal_ready)

    def _proposal_ready(self, image_id: int) -> None:
        self.sig_row_changed.emit(image_id)
        if self.workers.closed or self.state is None or self.state.image.id != image_id:
            return
        # Read on the loader thread (a team's server is a round trip away), applied when in.
        self.workers.load(load_review, self.ws, image_id, self.resolver, then=self._proposal_read)

    def _proposal_read(self, future: Future) -> None:
        try:
            fresh = future.result()
        except Exception as e:  # noqa: BLE001 - shown to the user; the app keeps working
            self.sig_error.emit(str(e))
            return
        state = self.state
        if state is None or state.image.id != fresh.image.id:
            return  # the clinician moved on meanwhile
        state.proposal, state.proposal_revision = fresh.proposal, fresh.proposal_revision
        state.ai_labels, state.palette = fresh.ai_labels, fresh.palette
        if self.session is not None and not self.session.dirty and not state.edited_by_human:
            # Nothing of the clinician's on screen: show the new proposal as the mask to edit.
            state.mask, state.mask_revision, state.labels = (
                fresh.mask,
                fresh.mask_revision,
                fresh.labels,
            )
            self.session = EditSession(state.mask, state.proposal)
        self.sig_loaded.emit(state, self.image, None)

    # -- edits -------------------------------------------------------------------------

    def edited(self, rect: tuple[int, int, int, int] | None) -> None:
        """After any change: repaint, and autosave once the clinician pauses."""
        self.sig_mask_changed.emit(rect)
        self._timer.start(AUTOSAVE_MS)

    def save_now(self, summary: dict | None = None) -> None:
        """Queue a save of the current mask if it changed (Ctrl+S, navigation, autosave);
        `summary` goes with the revision (`save_mask_edit`)."""
        self._timer.stop()
        session, state = self.session, self.state
        if session is None or state is None or not session.dirty:
            return
        if self._saving_version == session.version:
            return  # this exact content is already on its way
        mask, version = session.mask.copy(), session.version  # a snapshot: edits may go on
        self._saving_version = version

        def done(f: Future) -> None:
            self._saving_version = None
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 - disk full, read-only folder, ...
                self.save_error = str(e)
                self.sig_save_failed.emit(str(e))
                self._timer.start(RETRY_MS)
                return
            session.mark_saved(version)
            self.save_error = None
            self.last_saved = time.time()
            self.sig_saved.emit(self.last_saved)
            self.sig_row_changed.emit(state.image.id)

        self.workers.save(save_mask_edit, self.ws, state, mask, self.author, summary, then=done)

    def flush(self) -> None:
        """On close: save and wait, so nothing is lost."""
        self.save_now()
        self.workers.saver.submit(lambda: None).result()

    def set_labels(self, labels: dict[str, bool]) -> None:
        if self.state is None:
            return
        state = self.state
        self.workers.save(
            save_labels_edit, self.ws, state, labels, self.author,
            then=lambda f: self._after_save(f, state.image.id),
        )  # fmt: skip

    def set_status(self, status: str) -> None:
        if self.state is None:
            return
        self.save_now()  # the approved mask must be the one on screen
        image_id = self.state.image.id
        self.workers.save(
            lambda: self.ws.revisions.set_status(image_id, status, author=self.author),
            then=lambda f: self._after_save(f, image_id),
        )

    def _after_save(self, future: Future, image_id: int) -> None:
        try:
            future.result()
        except PermissionDenied as e:  # the server refused this login (an annotator approving)
            self.sig_error.emit(f"Not allowed: {e}")
            return
        except Exception as e:  # noqa: BLE001
            self.sig_save_failed.emit(str(e))
            return
        self.last_saved = time.time()
        self.sig_saved.emit(self.last_saved)
        self.sig_row_changed.emit(image_id)

    def proposal_mask(self) -> np.ndarray | None:
        return self.state.proposal if self.state else None
