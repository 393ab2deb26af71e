"""Background inference: one worker thread per loaded model, fed by a priority queue.

What the clinician looks at runs first (ON_SCREEN), then the images next to it (PREFETCH), then
whole-workspace runs (BATCH); FIFO within a priority. Every request is a
concurrent.futures.Future, so callers can wait, cancel, or (the GUI, later) turn completion
callbacks into Qt signals. Callbacks run on the worker thread; nothing here knows about Qt.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medviewer.imaging import FrameRef, Image, ImageLoader, Instance
from medviewer.inference.calibration import BackendStore, backend_store, default_backend
from medviewer.inference.device import pick_device
from medviewer.inference.engine import Engine
from medviewer.inference.errors import NotApplicable
from medviewer.inference.proposal import Proposal, propose, save_proposal
from medviewer.models.errors import ModelError
from medviewer.models.scope import why_not_applicable
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import load_gate_classifier, load_version

if TYPE_CHECKING:
    from medviewer.workspace import Workspace

ON_SCREEN, PREFETCH, BATCH = 0, 1, 2
Target = int | FrameRef | Image
Progress = Callable[[int, int], None]


@dataclass(order=True)
class _Request:
    priority: int
    seq: int  # tiebreak: FIFO within a priority, and never compares the payload
    target: Any = field(compare=False)
    future: Future = field(compare=False)
    save: bool = field(compare=False)


_STOP = object()


@dataclass(frozen=True)
class _Call:
    """Work other than a proposal that needs the model, e.g. Grad-CAM: fn(engine)."""

    fn: Callable[[Engine], Any]


class _Worker:
    """One model (plus its two-stage classifier) driven by exactly one thread."""

    def __init__(
        self, runner: InferenceRunner, engine: Engine, version: str, classifier: Engine | None
    ) -> None:
        self.runner = runner
        self.engine = engine
        self.version = version
        self.classifier = classifier
        self.queue: queue.PriorityQueue[_Request] = queue.PriorityQueue()
        name = f"inference-{engine.spec.name}-{version}"
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            req = self.queue.get()
            if req.target is _STOP:
                _drain(self.queue)  # anything put back by _more_batch while closing
                return
            if isinstance(req.target, _Call):
                self._call(req)
                continue
            group = [req]
            if req.priority == BATCH:
                group += self._more_batch(self.engine.batch_size - 1)
            if self.runner._closed:  # taken just before close() drained the queue
                for r in group:
                    r.future.cancel()
                continue
            try:
                self._run([r for r in group if r.future.set_running_or_notify_cancel()])
            except BaseException as e:  # noqa: BLE001 - the worker must outlive any request
                for r in group:
                    if r.future.running():
                        r.future.set_exception(e)

    def stop(self) -> None:
        """Cancel what is queued; the thread ends after the request in flight."""
        _drain(self.queue)
        self.queue.put(_Request(-1, -1, _STOP, Future(), False))

    def _call(self, req: _Request) -> None:
        if not req.future.set_running_or_notify_cancel():
            return
        try:
            req.future.set_result(req.target.fn(self.engine))
        except BaseException as e:  # noqa: BLE001 - the worker must outlive any request
            req.future.set_exception(e)

    def _more_batch(self, n: int) -> list[_Request]:
        """Further queued BATCH requests to run in the same forward pass (GPU throughput)."""
        more: list[_Request] = []
        while len(more) < n:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt.priority != BATCH:
                self.queue.put(nxt)  # same seq: it keeps its place
                break
            more.append(nxt)
        return more

    def _propose(self, images: list[Image]) -> list[Proposal]:
        return propose(self.engine, images, self.version, self.classifier)

    def _run(self, group: list[_Request]) -> None:
        ready: list[tuple[_Request, Image]] = []
        for req in group:
            try:
                ready.append((req, self.runner.load_image(req.target, self.engine.spec)))
            except BaseException as e:  # noqa: BLE001 - every failure belongs to its Future
                req.future.set_exception(e)
        batch: list[Proposal] = []
        if len(ready) > 1:
            with contextlib.suppress(Exception):  # one bad image spoils a batch: go one by one
                batch = self._propose([im for _, im in ready])
        for k, (req, im) in enumerate(ready):
            self._finish(req, lambda k=k, im=im: batch[k] if batch else self._propose([im])[0])

    def _finish(self, req: _Request, make: Callable[[], Proposal]) -> None:
        try:
            proposal = make()
            if req.save:
                image_id = self.runner.image_id(req.target)
                saved = save_proposal(self.runner.ws, image_id, proposal)
                proposal.extra["image_id"] = image_id
                proposal.extra["revisions"] = [r.id for r in saved]
        except BaseException as e:  # noqa: BLE001 - including interrupts: never leave it hanging
            req.future.set_exception(e)
        else:
            req.future.set_result(proposal)


class InferenceRunner:
    """Runs models on workspace images in the background, e.g.

    with InferenceRunner(ws, device="cpu") as runner:
        runner.load("chest")  # its active version
        proposal = runner.submit(image_id, ON_SCREEN).result()
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        device: str = "auto",
        batch_size: int | None = None,
        loader: ImageLoader | None = None,
        backend: str | None = None,
    ) -> None:
        self.ws = ws
        self.device = pick_device(device)  # once: every model of the runner on one device
        self.batch_size = batch_size  # None: the engine's choice (4 on a CPU, GPU: from memory)
        self.backend = backend or default_backend()  # auto | torch | onnxruntime (Engine)
        self.loader = loader or ImageLoader()
        self._workers: dict[str, _Worker] = {}
        self._seq = itertools.count()
        self._lock = threading.Lock()  # submit vs close: no request slips in after close
        self._closed = False

    def load(self, name: str, version: str | None = None) -> str:
        """Load a registered model version (the active one by default) onto a new worker; a
        two-stage gate's classifier runs on the same worker (propose needs both at once)."""
        model, spec, version = load_version(self.ws, name, version)
        stage_one = load_gate_classifier(self.ws, spec)
        classifier = None
        if stage_one:
            store = backend_store(self.ws, stage_one[1].name)
            classifier = Engine(*stage_one, self.device, self.batch_size, **self._how(store))
        store = backend_store(self.ws, name, version)
        engine = Engine(model, spec, self.device, self.batch_size, **self._how(store))
        self.attach(engine, version, classifier)
        return version

    def _how(self, store: BackendStore) -> dict[str, Any]:
        return {"backend": self.backend, "store": store}

    def attach(self, engine: Engine, version: str, classifier: Engine | None = None) -> None:
        """Run an already built Engine (tests, or a model not kept in the workspace)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference runner is closed")
            name = engine.spec.name
            old = self._workers.get(name)
            # Another version of a loaded model replaces it: what is queued for the old one is
            # cancelled (the caller re-submits for the new version).
            self._workers[name] = _Worker(self, engine, version, classifier)
        if old is not None:
            old.stop()

    def spec(self, model: str | None = None) -> ModelSpec:
        return self._worker(model).engine.spec

    def backend_of(self, model: str | None = None) -> str:
        """What runs the model and why, e.g. "onnxruntime (calibrated: ...)"; empty until the
        model's first run sets it up."""
        engine = self._worker(model).engine
        return f"{engine.backend} ({engine.backend_note})" if engine.backend else ""

    @property
    def models(self) -> dict[str, str]:
        """Loaded model name -> version."""
        return {name: w.version for name, w in self._workers.items()}

    def submit(
        self,
        target: Target,
        priority: int = ON_SCREEN,
        *,
        save: bool = True,
        model: str | None = None,
    ) -> Future[Proposal]:
        """Queue one image (workspace id, FrameRef or Image) for `model` (default: the only
        one loaded). With save=True the proposal is stored as `ai` revisions."""
        if save and isinstance(target, Image):
            raise ValueError("an Image has no workspace id to save under; pass save=False")
        future: Future[Proposal] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference runner is closed")
            worker = self._worker(model)
            worker.queue.put(_Request(priority, next(self._seq), target, future, save))
        return future

    def call(
        self, fn: Callable[[Engine], Any], priority: int = ON_SCREEN, *, model: str | None = None
    ) -> Future:
        """Run fn(engine) on the model's worker thread (the engine is not thread-safe), e.g.
        Grad-CAM for the image on screen."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference runner is closed")
            worker = self._worker(model)
            worker.queue.put(_Request(priority, next(self._seq), _Call(fn), future, False))
        return future

    def submit_many(
        self,
        targets: Iterable[Target],
        priority: int = BATCH,
        *,
        save: bool = True,
        model: str | None = None,
        on_progress: Progress | None = None,
    ) -> list[Future[Proposal]]:
        """Queue many images; `on_progress(done, total)` counts finished ones (result or error;
        cancelled ones do not count) and is called on the worker thread."""
        targets = list(targets)
        futures = [self.submit(t, priority, save=save, model=model) for t in targets]
        if on_progress is not None:
            total, done, lock = len(futures), [0], threading.Lock()

            def count(f: Future) -> None:
                if f.cancelled():
                    return
                with lock:  # held while reporting, so counts arrive in order
                    done[0] += 1
                    on_progress(done[0], total)

            for f in futures:
                f.add_done_callback(count)
        return futures

    def _worker(self, model: str | None) -> _Worker:
        if model is None and len(self._workers) == 1:
            return next(iter(self._workers.values()))
        if model not in self._workers:
            what = f"model {model} is not loaded" if model else "say which model to run"
            raise ModelError(f"{what} (loaded: {', '.join(self._workers) or 'none'})")
        return self._workers[model]

    def load_image(self, target: Target, spec: ModelSpec | None = None) -> Image:
        """The pixels of a target; with `spec`, NotApplicable when that model does not apply
        to it (an Image given directly is the caller's choice and is not checked)."""
        if isinstance(target, Image):
            return target
        ref = target if isinstance(target, FrameRef) else self.ws.frame_ref(target)
        if spec is not None:
            reason = why_not_applicable(spec, ref.instance)
            if reason is not None:
                raise NotApplicable(f"{ref.instance.path}: {reason}")
        return self.loader.image(ref)

    def image_id(self, target: Target) -> int:
        if isinstance(target, int):
            return target
        assert isinstance(target, FrameRef)
        return self.ws.image_id_of(target)

    def applicable_to(self, inst: Instance) -> list[str]:
        """The loaded models that apply to an image's file record (no query: the app reads
        the record off its GUI thread and asks here)."""
        return [
            name for name, w in list(self._workers.items())
            if why_not_applicable(w.engine.spec, inst) is None
        ]  # fmt: skip

    def close(self, wait: bool = True) -> None:
        """Cancel everything not started and stop the workers; a running request finishes
        (and is saved), since a forward pass cannot be interrupted halfway."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for worker in self._workers.values():
            worker.stop()
        if wait:
            for worker in self._workers.values():
                if worker.thread is not threading.current_thread():  # close() from a callback
                    worker.thread.join()

    def __enter__(self) -> InferenceRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(q: queue.PriorityQueue[_Request]) -> None:
    """Cancel every request still queued (the worker may be taking one at the same time)."""
    while True:
        try:
            q.get_nowait().future.cancel()
        except queue.Empty:
            return
