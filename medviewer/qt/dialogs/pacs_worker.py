"""The PACS dialogs' background work: one job at a time on a dedicated thread (the network may
take a node's whole timeout), its progress and end delivered on the GUI thread, cancel by an
Event the core checks between instances. The GUI thread never waits on the job."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

from medviewer.deid.errors import DeidentificationError
from medviewer.pacs.errors import PacsError
from medviewer.qt.workers import FutureBridge
from medviewer.workspace.errors import WorkspaceError

log = logging.getLogger(__name__)

# Errors a user can meet: their message names the node or file and the reason.
EXPECTED = (PacsError, DeidentificationError, WorkspaceError, OSError)
BUSY = "busy with the PACS: wait until it ends, or cancel it"


def describe(error: BaseException) -> str:
    """One line for the dialog's status line; an unexpected error is logged with its trace."""
    if isinstance(error, EXPECTED):
        return str(error)
    log.error("PACS job failed", exc_info=error)
    return f"unexpected error ({type(error).__name__}): {error}"


class PacsWorker(QObject):
    """Runs `fn(cancel)` on the "pacs" thread; `then(value)` or `failed(error)` on the GUI's."""

    sig_progress = Signal(int, object)  # instances done, total (None: unknown)
    sig_busy = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = FutureBridge()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pacs")
        self.cancel = threading.Event()
        self.future: Future | None = None
        self._running = False  # from run() until its outcome is handled on the GUI thread

    @property
    def busy(self) -> bool:
        return self._running

    def run(
        self,
        fn: Callable[[threading.Event], Any],
        then: Callable[[Any], None],
        failed: Callable[[BaseException], None],
    ) -> bool:
        """Start a job; False (nothing started) while another one runs."""
        if self.busy:
            return False
        self.cancel = cancel = threading.Event()

        def deliver(future: Future) -> None:
            self._running = False
            self.sig_busy.emit(False)
            error = future.exception()
            if error is None:
                then(future.result())
            else:
                failed(error)

        self.future = self._pool.submit(fn, cancel)
        self._running = True
        self.sig_busy.emit(True)
        self.bridge.watch(self.future, deliver)  # delivers at once if it is done already
        return True

    def progress(self, done: int, total: int | None) -> None:
        """A core `Progress` callback: called on the pacs thread, shown on the GUI's."""
        self.sig_progress.emit(done, total)

    def stop(self) -> None:
        """Cancel the running job; it ends after the instance in flight (nothing waits)."""
        self.cancel.set()

    def shutdown(self) -> None:
        self.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
