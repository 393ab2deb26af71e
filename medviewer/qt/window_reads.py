"""The main window's own database work off the GUI thread: a worklist row after a save, the
shown image's place in its series for the corners, the model list, the poll for versions
activated elsewhere, and activating a version.
On a PostgreSQL server across a network each is a round trip; on the GUI thread it froze the
window. One worker thread, so results come back in the order they were asked for (an older
row never lands over a newer one); results and errors arrive as signals on the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from medviewer.workspace import ImageQuery, PermissionDenied

if TYPE_CHECKING:
    from medviewer.workspace import ImageRow, Workspace


class WindowReads(QObject):
    """Owned by the window (its Qt parent): the window's slots go when it goes."""

    sig_row = Signal(object, bool, object)  # ImageRow, whether confirmed was read, Confirmed
    sig_place = Signal(int, int, str, object)  # image id, 1-based place, date, series ids
    sig_models = Signal(object)  # list[ModelVersion]
    sig_active = Signal(object)  # dict: model name -> its active version
    sig_error = Signal(str)  # a read failed: for the status bar
    sig_refused = Signal(str)  # an activation failed: for the clinician, in words

    def __init__(self, ws: Workspace, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ws = ws
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="window-db")
        self._closed = False
        self._asking_active = False  # the poll asks again only once its last answer came

    def row(self, image_id: int, *, confirmed: bool) -> None:
        """The image's worklist row; with `confirmed`, its confirmed truth too (it is shown)."""

        def read() -> None:
            row = self.ws.image(image_id)
            truth = self.ws.revisions.confirmed(image_id) if confirmed else None
            self._emit(self.sig_row, row, confirmed, truth)

        self._submit(read, f"could not refresh image {image_id}")

    def place(self, row: ImageRow) -> None:
        """Where the image lies in its series, and its study date (the corners, the wheel)."""

        def read() -> None:
            series = self.ws.images(ImageQuery(series_uid=row.series_uid))
            k = next((i for i, r in enumerate(series) if r.id == row.id), row.position)
            date = self.ws.frame_ref(row.id).instance.study_date
            self._emit(self.sig_place, row.id, k + 1, date, [r.id for r in series])

        self._submit(read, f"could not read the series of image {row.id}")

    def models(self) -> None:
        self._submit(lambda: self._emit(self.sig_models, self.ws.models.list()), "no model list")

    def active_versions(self) -> None:
        """Which versions are active now (another process may have activated one), and the
        model list (a worker may have registered one); a failure is silent: the window asks
        again at its next poll."""
        if self._asking_active or self._closed:
            return
        self._asking_active = True

        def read() -> None:
            try:
                versions = self.ws.models.list()  # a few rows: one query gives both
            except Exception:  # noqa: BLE001 - a busy database: look again next time
                return
            finally:
                self._asking_active = False
            self._emit(self.sig_models, versions)
            self._emit(self.sig_active, {m.name: m.version for m in versions if m.active})

        self._pool.submit(read)

    def activate(self, name: str, version: str) -> None:
        """Through the one owner (`ModelVersions.activate`), whose listeners tell the window."""

        def write() -> None:
            try:
                self.ws.models.activate(name, version)
            except PermissionDenied as e:  # an annotator's login: the server refused
                self._emit(self.sig_refused, f"Not allowed: {e}")
            except Exception as e:  # noqa: BLE001 - shown; the active version stays
                self._emit(self.sig_refused, f"Could not activate {name} {version}: {e}")

        self._submit(write, f"could not activate {name} {version}")

    def close(self) -> None:
        """The window closes: nothing more is read or shown; a read in flight ends unseen."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self, fn: Callable[[], None], what: str) -> None:
        if self._closed:
            return

        def run() -> None:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - a busy server: the next change reads again
                self._emit(self.sig_error, f"{what}: {e}")

        self._pool.submit(run)

    def _emit(self, signal: Any, *args: object) -> None:
        if not self._closed:  # the window (and this object with it) may be gone
            signal.emit(*args)
