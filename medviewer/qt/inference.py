"""The app's side of inference: starts the runner off the GUI thread (importing torch takes
seconds), asks it for proposals of the image on screen and the next ones, and reports back on
the GUI thread through the Future bridge."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from medviewer.imaging import ImageLoader

if TYPE_CHECKING:
    from medviewer.inference.runner import InferenceRunner
    from medviewer.qt.workers import Workers
    from medviewer.workspace import Workspace


class RunnerHost(QObject):
    sig_ready = Signal(str)  # device description
    sig_jobs_changed = Signal(int)  # requests in flight
    sig_error = Signal(str)

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

    def models_for(self, image_id: int) -> list[str]:
        """The loaded models that apply to this image (each spec's `applies_to`): a fundus
        classifier never puts its labels on a chest radiograph."""
        return self.runner.applicable(image_id) if self.runner is not None else []

    def has_proposal(self, image_id: int, name: str) -> bool:
        return self.ws.revisions.has_proposal(image_id, name, self.versions[name])

    def propose(self, image_id: int, on_screen: bool, then: Callable[[int], Any]) -> None:
        """Queue a proposal from each relevant model unless this version already made one."""
        if self._closed:
            return  # e.g. a reload that finished after the window closed
        if self.runner is None:
            self._waiting.append((image_id, on_screen, then))
            return
        from medviewer.inference.runner import ON_SCREEN, PREFETCH

        for name in self.models_for(image_id):
            if self.has_proposal(image_id, name):
                continue
            future = self.runner.submit(image_id, ON_SCREEN if on_screen else PREFETCH, model=name)
            self._track(future)
            self.workers.bridge.watch(future, lambda f, i=image_id: self._proposed(f, i, then))

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
            ref = self.ws.frame_ref(image_id)

            def compute(engine, ref=ref, label=label):
                from medviewer.inference.cam import grad_cam

                maps = grad_cam(engine, self.loader.image(ref), label)
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

    def _proposed(self, future: Future, image_id: int, then: Callable[[int], Any]) -> None:
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
            self.sig_jobs_changed.emit(len(self._in_flight))

        self.workers.bridge.watch(future, untrack)

    def close(self) -> None:
        """Cancel queued requests and wait for the one in flight: a thread still inside torch
        when the interpreter exits aborts the process."""
        self._closed = True
        if self.runner is not None:
            self.runner.close(wait=True)
