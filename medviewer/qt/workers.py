"""The one bridge from background work to the GUI: Futures in, Qt signals out.

Core code returns concurrent.futures.Futures (the inference runner, the loader and saver pools
here). `watch` connects a Future's completion to a callback that runs on the GUI thread, so no
widget is ever touched from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal


class FutureBridge(QObject):
    """Re-emits Future completions on the thread this object lives in (the GUI thread)."""

    sig_done = Signal(object, object)  # (future, callback)

    def __init__(self) -> None:
        super().__init__()
        self.sig_done.connect(self._deliver)

    def watch(self, future: Future, callback: Callable[[Future], Any]) -> Future:
        # add_done_callback runs on the worker thread (or at once if already done); emitting a
        # signal from there is queued to the receiver's thread by Qt.
        future.add_done_callback(lambda f: self.sig_done.emit(f, callback))
        return future

    def _deliver(self, future: Future, callback: Callable[[Future], Any]) -> None:
        if not future.cancelled():
            callback(future)


class Workers:
    """Thread pools for GUI-side background work: loading images, saving revisions.

    Saving is one thread, so revisions of an image are written in the order they were made.
    """

    def __init__(self) -> None:
        self.bridge = FutureBridge()
        self.loader = ThreadPoolExecutor(max_workers=2, thread_name_prefix="load")
        self.saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="save")
        self.closed = False  # after shutdown: late callbacks (a model's answer) submit nothing

    def load(self, fn: Callable[..., Any], *args: Any, then: Callable[[Future], Any]) -> Future:
        return self.bridge.watch(self.loader.submit(fn, *args), then)

    def save(self, fn: Callable[..., Any], *args: Any, then: Callable[[Future], Any]) -> Future:
        return self.bridge.watch(self.saver.submit(fn, *args), then)

    def shutdown(self) -> None:
        self.closed = True
        self.loader.shutdown(wait=False, cancel_futures=True)
        self.saver.shutdown(wait=True)  # pending saves finish: nothing is dropped on close
