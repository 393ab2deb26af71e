"""A shared PostgreSQL workspace in the window (issue 16): who else has the shown image open
(`workspace.leases`: taken, heartbeat and released on a worker), others' revisions in the
worklist (`workspace.changes.ChangeFeed` followed on its own thread) and a note when the shown
image gets a mask by someone else. SQLite keeps one window per workspace (AppLock): nothing here.
The GUI thread never waits on the database: every query runs on the team worker or the feed.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel

from medviewer.workspace import leases
from medviewer.workspace.changes import ChangeFeed

if TYPE_CHECKING:
    from medviewer.qt.main_window import MainWindow
    from medviewer.workspace import ImageQuery, ImageRow, Workspace
    from medviewer.workspace.leases import Lease
    from medviewer.workspace.review_state import ReviewState
    from medviewer.workspace.revisions import Revision

FEED_WAIT_S = 0.5  # the feed thread's longest wait: how soon it notices the window closing


@dataclass(frozen=True)
class ChangedRows:
    """What the feed thread read after others' saves: the worklist's filter query run again
    (`order`: its ids in its order; None while no query is known), the changed images' rows it
    returned, and the shown image's row whether it matches or not."""

    changed: set[int]
    rows: dict[int, ImageRow]
    query: ImageQuery | None
    order: list[int] | None


class TeamPresence(QObject):
    """Leases and the change feed for one window; signals arrive on the GUI thread."""

    sig_changed = Signal(object)  # ChangedRows: images whose revisions changed
    sig_others = Signal(int, object)  # image id, logins besides this window that have it open
    sig_newer_mask = Signal(int, object)  # image id, its latest mask Revision (anyone's)
    sig_error = Signal(str)

    def __init__(self, ws: Workspace, author: str) -> None:
        super().__init__()
        self.ws = ws
        self.author = author
        self.client = leases.client_id()
        self.image_id: int | None = None  # the shown image; written on the GUI thread only
        self.query: ImageQuery | None = None  # the worklist's filter; written on the GUI thread
        self._lease: Lease | None = None  # read and written on the team worker only
        self.login: str | None = None  # this window's holder name (the server login)
        self.view: TeamView | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="team")
        self._stop = threading.Event()
        self._feed = threading.Thread(target=self._follow, name="team-feed", daemon=True)
        self._feed.start()
        self._beat = QTimer(self)
        self._beat.timeout.connect(self._heartbeat)
        self._beat.start(int(leases.LEASE_SECONDS / 3 * 1000))

    def opened(self, image_id: int) -> None:
        """The window shows this image now: lease it (the previous one released), ask who else."""
        if image_id == self.image_id or self._stop.is_set():
            return  # closed: an image load that lands while the window closes leases nothing
        self.image_id = image_id
        self._pool.submit(self._take, image_id)

    def _take(self, image_id: int) -> None:
        try:
            if self._lease is not None and self._lease.image_id != image_id:
                leases.release(self.ws, self._lease)
                self._lease = None
            self._lease = leases.open_lease(self.ws, image_id, self.author, self.client)
            self.login = self._lease.holder
        except Exception as e:  # noqa: BLE001 - shown; a lease only informs, editing goes on
            self.sig_error.emit(f"could not record that image {image_id} is open here: {e}")
        self._ask_who(image_id)

    def _ask_who(self, image_id: int) -> None:
        try:
            others = leases.who_has(self.ws, image_id, besides=self.client)
        except Exception:  # noqa: BLE001 - asked again at the next heartbeat or change
            return
        self.sig_others.emit(image_id, sorted({lease.holder for lease in others}))

    def _heartbeat(self) -> None:
        if not self._stop.is_set():  # a beat queued before close() runs nothing after it
            self._pool.submit(self._beat_now)

    def _beat_now(self) -> None:
        if self._lease is None:
            return
        try:
            self._lease = leases.heartbeat(self.ws, self._lease)
        except Exception:  # noqa: BLE001 - a busy server: the next beat comes before expiry
            return
        self._ask_who(self._lease.image_id)

    def _follow(self) -> None:
        """The feed thread: changed images' rows, and the shown image's newest mask and
        holders when it is among them; its holders again when a window opens or closes it."""
        try:
            feed = ChangeFeed(self.ws, leases=True)
        except Exception as e:  # noqa: BLE001 - the window works on without live updates
            self.sig_error.emit(f"no live updates from {self.ws.where}: {e}")
            return
        try:
            if self.image_id is not None:  # opened by others before this feed listened
                self._ask_later(self.image_id)
            while not self._stop.is_set():
                heard = feed.poll_changes(FEED_WAIT_S)
                changed, shown = heard.revisions, self.image_id
                if self._stop.is_set():
                    break
                try:
                    if changed:
                        self.sig_changed.emit(self._read_changed(changed, shown))
                    if shown in changed:
                        self.sig_newer_mask.emit(shown, self.ws.revisions.latest(shown, "mask"))
                    if shown is not None and (shown in changed or shown in heard.leases):
                        self._ask_later(shown)
                except Exception:  # noqa: BLE001 - the next change reads them again
                    continue
        finally:
            feed.close()

    def _ask_later(self, image_id: int) -> None:
        """Who has it, asked on the team worker in turn with its own asks, so an older answer
        from another thread never lands over a newer one."""
        try:
            self._pool.submit(self._ask_who, image_id)
        except RuntimeError:  # the window closed meanwhile
            pass

    def _read_changed(self, changed: set[int], shown: int | None) -> ChangedRows:
        """On the feed thread: the filter query again (its one owner, `Workspace.images`), so a
        changed image that now matches it appears and one that no longer does goes."""
        query = self.query
        if query is None:
            rows = {i: self.ws.image(i) for i in sorted(changed)}
            return ChangedRows(changed, rows, None, None)
        matching = self.ws.images(query)
        rows = {r.id: r for r in matching if r.id in changed}
        if shown in changed and shown not in rows:
            rows[shown] = self.ws.image(shown)
        return ChangedRows(changed, rows, query, [r.id for r in matching])

    def close(self) -> None:
        """The window closes: stop the feed, release the lease (waited for, briefly)."""
        if self._stop.is_set():
            return
        self._beat.stop()
        self._stop.set()
        self.image_id = None

        def release() -> None:
            if self._lease is not None:
                try:
                    leases.release(self.ws, self._lease)
                except Exception:  # noqa: BLE001 - it expires within LEASE_SECONDS anyway
                    pass
                self._lease = None

        self._pool.submit(release)
        self._pool.shutdown(wait=True)
        self._feed.join(timeout=2 * FEED_WAIT_S + 1)


def others_text(logins: list[str]) -> str:
    """The status bar's words for who else has the image open."""
    return f"also open by {', '.join(logins)}" if logins else ""


class TeamView:
    """The window's side of it: one status bar line (who else has the image open, a conflict,
    a newer mask by someone else) and the worklist rows others changed."""

    def __init__(self, win: MainWindow, presence: TeamPresence) -> None:
        self.win = win
        self.presence = presence
        self.label = QLabel("")
        self.label.setObjectName("team")
        win.statusBar().insertPermanentWidget(0, self.label)
        self._parts: dict[str, str] = {}
        self._state: ReviewState | None = None
        win.review.sig_loaded.connect(self._loaded)
        presence.query = win.worklist.query()
        win.worklist.sig_query_changed.connect(self._query_changed)
        presence.sig_changed.connect(self._changed)
        presence.sig_others.connect(self._others)
        presence.sig_newer_mask.connect(self._newer_mask)
        presence.sig_error.connect(lambda m: win.statusBar().showMessage(m, 10000))

    def _shown(self) -> int | None:
        state = self.win.review.state
        return state.image.id if state is not None else None

    def _show(self, **parts: str) -> None:
        self._parts.update(parts)
        self.label.setText(" | ".join(p for p in self._parts.values() if p))

    def _loaded(self, state: ReviewState, *_: object) -> None:
        if state.image.id != self.presence.image_id:
            self._show(others="")
        if state is not self._state:  # a fresh load (not a proposal shown): what it read is new
            self._state = state
            self._show(newer="")
        self.presence.opened(state.image.id)
        self._show(conflict=CONFLICT_NOTE if state.image.conflict else "")

    def _query_changed(self, query: ImageQuery) -> None:
        self.presence.query = query

    def _changed(self, news: ChangedRows) -> None:
        model, shown = self.win.worklist.model, self._shown()
        if news.order is not None and news.query is self.presence.query:
            model.merge(news.order, news.rows, news.changed, keep=shown)
        else:  # the filter changed meanwhile (the window queries it anew): update what is there
            for row in news.rows.values():
                model.update_row(row)
        row = news.rows.get(shown) if shown is not None else None
        if row is not None:
            self._show(conflict=CONFLICT_NOTE if row.conflict else "")

    def _others(self, image_id: int, logins: list[str]) -> None:
        if image_id == self._shown():
            self._show(others=others_text(logins))

    def _newer_mask(self, image_id: int, rev: Revision | None) -> None:
        state = self.win.review.state
        if rev is None or state is None or state.image.id != image_id:
            return
        mine = state.mask_revision is not None and rev.id == state.mask_revision.id
        if mine or rev.author == self.presence.login:
            return
        # Never replace the clinician's mask under their hands: say so; reopening shows theirs.
        note = f"{rev.author} saved a newer mask: reopen the image to see it"
        self._show(newer=note)
        self.win.statusBar().showMessage(f"{note} (your edits here are kept)", 15000)


CONFLICT_NOTE = "conflict: two masks were saved at once, both kept; save or decide to settle"


def install(win: MainWindow) -> TeamPresence | None:
    """Leases and live updates for a window on a PostgreSQL workspace; None on SQLite."""
    if win.ws.dialect != "postgresql":
        return None
    presence = TeamPresence(win.ws, win.review.author)
    presence.view = TeamView(win, presence)  # kept alive with the presence
    return presence
