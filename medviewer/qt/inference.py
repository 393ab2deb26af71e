"""The app's side of inference: starts the runner off the GUI thread (importing torch takes
seconds), asks it for proposals of the image on screen and the next ones, and reports back on
the GUI thread through the Future bridge.

No query on the GUI thread (on a team's PostgreSQL server each is a round trip that froze the
window): whether a proposal exists is read on the host's own database thread, in the order
asked; each image's file record (which models apply, the heatmap's pixels) is read there, or by
the review's loader, once, and kept (`frame_ref`), so `models_for` answers from what was read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from medviewer.imaging import FrameRef, ImageLoader

if TYPE_CHECKING:
    from medviewer.inference.runner import InferenceRunner
    from medviewer.qt.workers import Workers
    from medviewer.workspace import Workspace


class RunnerHost(QObject):
    sig_ready = Signal(str)  # device description
    sig_jobs_changed = Signal(int)  # requests in flight
    sig_error = Signal(str)
    sig_scope_read = Signal(object)  # image ids whose file records were read: models_for knows

    REFS_KEPT = 100_000  # file records kept (a few hundred bytes each)

    def __init__(self, ws: Workspace, workers: Workers, device: str = "auto") -> None:
        super().__init__()
        self.ws = ws
        self.workers = workers
        self.device = device
        self.loader = ImageLoader()
        self.runner: InferenceRunner | None = None
        self.versions: dict[str, str] = {}  # model name -> loaded version
        self._waiting: list[tuple[int, bool, Callable[[int], Any]]] = []
        self._in_flight: set[Future] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._refs: OrderedDict[int, FrameRef] = OrderedDict()  # image id -> its file record
        self._refs_lock = threading.Lock()
        self._asked: set[int] = set()  # ids whose record a scope read is fetching now
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runner-db")

    def start(self) -> Future:
        return self.workers.load(self._start, then=self._started)

    def _start(self) -> str:
        from medviewer.inference.batch import active_models
        from medviewer.inference.device import describe
        from medviewer.inference.runner import InferenceRunner

        runner = InferenceRunner(self.ws, device=self.device, loader=self.loader)
        versions = {name: runner.load(name) for name in active_models(self.ws)}
        old, self.runner, self.versions = self.runner, runner, versions
        if old is not None:
            old.close(wait=True)  # a restart (models added meanwhile): the old one lets go
        return describe(runner.device)

    def _started(self, future: Future) -> None:
        try:
            device = future.result()
        except Exception as e:  # noqa: BLE001 - the viewer works without AI
            self.sig_error.emit(f"models could not be loaded: {e}")
            return
        self.sig_ready.emit(device)
        waiting, self._waiting = self._waiting, []
        for image_id, on_screen, then in waiting:
            self.propose(image_id, on_screen, then)

    def reload(self, name: str) -> Future:
        """After activating another version: load it, then re-run the image on screen."""

        def load() -> str:
            assert self.runner is not None
            self.versions[name] = self.runner.load(name)
            return name

        return self.workers.load(
            load, then=lambda f: f.exception() and self.sig_error.emit(str(f.exception()))
        )

    def frame_ref(self, image_id: int) -> FrameRef:
        """The image's file record, read once and kept (an image's file does not change under
        it). Off the GUI thread only: a record not yet kept is read."""
        with self._refs_lock:
            ref = self._refs.get(image_id)
        if ref is None:
            ref = self.ws.frame_ref(image_id)
            self._keep({image_id: ref})
        return ref

    def _keep(self, refs: dict[int, FrameRef]) -> None:
        with self._refs_lock:
            self._refs.update(refs)
            while len(self._refs) > self.REFS_KEPT:
                self._refs.popitem(last=False)

    def read_scope(self, image_ids: Iterable[int]) -> None:
        """Read the file records of these images not yet kept, in one query on the host's
        database thread; `sig_scope_read` then names them (e.g. the worklist's rows drawn)."""
        with self._refs_lock:  # rows drawn again before the read lands ask nothing more
            wanted = [i for i in image_ids if i not in self._refs and i not in self._asked]
            if not wanted or self._closed:
                return
            self._asked.update(wanted)

        def read() -> list[int]:
            try:
                self._keep(self.ws.frame_refs(wanted))
            finally:
                with self._refs_lock:
                    self._asked.difference_update(wanted)
            return wanted

        self.workers.bridge.watch(self._db.submit(read), self._scope_read)

    def _scope_read(self, future: Future) -> None:
        if future.exception() is not None:  # a busy server: the rows ask again when drawn
            self.sig_error.emit(f"could not read which models apply: {future.exception()}")
            return
        if not self._closed:
            self.sig_scope_read.emit(future.result())

    def models_known(self, image_id: int) -> list[str] | None:
        """The loaded models that apply to this image (each spec's `applies_to`: a fundus
        classifier never puts its labels on a chest radiograph); None until the models are
        loaded and the image's file record was read (never a query here)."""
        with self._refs_lock:
            ref = self._refs.get(image_id)
        if self.runner is None or ref is None:
            return None
        return self.runner.applicable_to(ref.instance)

    def models_for(self, image_id: int) -> list[str]:
        """`models_known`, empty until known (the image on screen is known once loaded)."""
        return self.models_known(image_id) or []

    def propose(self, image_id: int, on_screen: bool, then: Callable[[int], Any]) -> None:
        """Queue a proposal from each relevant model unless this version already made one
        (read on the host's database thread; queued when the answer lands)."""
        if self._closed:
            return  # e.g. a reload that finished after the window closed
        if self.runner is None:
            self._waiting.append((image_id, on_screen, then))
            return
        runner, versions = self.runner, dict(self.versions)

        def unproposed() -> list[str]:
            names = runner.applicable_to(self.frame_ref(image_id).instance)
            return [
                n for n in names
                if n in versions
                and not self.ws.revisions.has_proposal(image_id, n, versions[n])
            ]  # fmt: skip

        try:
            future = self._db.submit(unproposed)
        except RuntimeError:  # closed meanwhile
            return
        self.workers.bridge.watch(future, partial(self._submit, image_id, on_screen, then))

    def _submit(
        self, image_id: int, on_screen: bool, then: Callable[[int], Any], read: Future
    ) -> None:
        from medviewer.inference.runner import ON_SCREEN, PREFETCH

        if self._closed or self.runner is None:
            return
        try:
            names = read.result()
        except Exception as e:  # noqa: BLE001 - one image's failure is a message, not a crash
            self.sig_error.emit(str(e))
            return
        for name in names:
            priority = ON_SCREEN if on_screen else PREFETCH
            try:
                future = self.runner.submit(image_id, priority, model=name)
            except Exception:  # noqa: BLE001 - unloaded meanwhile (a restart): asked again then
                continue
            self._track(future)
            self.workers.bridge.watch(future, partial(self._proposed, image_id=image_id, then=then))

    def call(self, name: str, fn: Callable[[Any], Any], then: Callable[[Future], Any]) -> Future:
        """fn(engine) on model `name`'s worker (counted in "AI: n running"); then(future) on
        the GUI thread, e.g. the AI click tool's runs."""
        assert self.runner is not None
        future = self.runner.call(fn, model=name)
        self._track(future)
        return self.workers.bridge.watch(future, then)

    def heatmap(
        self, image_id: int, label: str | None, then: Callable[[int, str, Any], Any]
    ) -> bool:
        """Grad-CAM of `label` (default: the model's most probable label) for an image, computed
        on the model's worker; then(image_id, label, heatmap) on the GUI thread. False when no
        loaded model classifies this image."""
        if self.runner is None:
            return False
        for name in self.models_for(image_id):
            spec = self.runner.spec(name)
            if not spec.labels:
                continue

            def compute(engine, label=label):
                from medviewer.inference.cam import grad_cam

                maps = grad_cam(engine, self.loader.image(self.frame_ref(image_id)), label)
                chosen = (
                    label if label is not None else max(maps, key=lambda k: float(maps[k].max()))
                )
                return chosen, maps[chosen]

            future = self.runner.call(compute, model=name)
            self._track(future)
            self.workers.bridge.watch(future, lambda f, i=image_id: self._heat_ready(f, i, then))
            return True
        return False

    def _heat_ready(
        self, future: Future, image_id: int, then: Callable[[int, str, Any], Any]
    ) -> None:
        try:
            label, heat = future.result()
        except Exception as e:  # noqa: BLE001
            self.sig_error.emit(f"heatmap failed: {e}")
            return
        then(image_id, label, heat)

    def _proposed(self, future: Future, *, image_id: int, then: Callable[[int], Any]) -> None:
        try:
            future.result()
        except Exception as e:  # noqa: BLE001 - one image's failure is a message, not a crash
            self.sig_error.emit(str(e))
            return
        then(image_id)

    def _track(self, future: Future) -> None:
        with self._lock:
            self._in_flight.add(future)
        self.sig_jobs_changed.emit(len(self._in_flight))

        def untrack(f: Future) -> None:
            with self._lock:
                self._in_flight.discard(f)
                n = len(self._in_flight)
            self.sig_jobs_changed.emit(n)  # queued to the GUI thread by Qt

        # Not through the bridge: it drops cancelled Futures (a restart cancels what was queued
        # for the old runner), and "AI: 1 running" stayed for good.
        future.add_done_callback(untrack)

    def close(self) -> None:
        """Cancel queued requests and wait for the one in flight: a thread still inside torch
        when the interpreter exits aborts the process."""
        self._closed = True
        self._db.shutdown(wait=False, cancel_futures=True)
        if self.runner is not None:
            self.runner.close(wait=True)
