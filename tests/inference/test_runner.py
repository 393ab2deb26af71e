"""The background runner: priorities, cancellation, progress, saving, per-image failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medviewer.imaging import ImageLoadError
from medviewer.inference.engine import Engine, RawOutput
from medviewer.inference.errors import InferenceError
from medviewer.inference.runner import BATCH, ON_SCREEN, PREFETCH, InferenceRunner
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model
from medviewer.workspace import Workspace
from tests.imaging.helpers import write_ct_slice

TINY = {
    "name": "tiny",
    "task": "segmentation+classification",
    "architecture": "FPN",
    "encoder": "mobilenet_v2",
    "classes": ["background", "lesion"],
    "labels": ["lesion"],
    "input": {"size": [64, 64]},
}
SPEC = ModelSpec.from_dict(TINY)


def make_studies(folder: Path, n: int = 4, small: bool = False) -> Path:
    """n 64x64 CT slices in one series; with `small` also a 16x16 image in its own series."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        px = rng.integers(0, 2000, (64, 64)).astype(np.int16)
        write_ct_slice(folder / f"s{k}.dcm", px, series_uid="1.2.3.1", position=(0, 0, float(k)))
    if small:
        write_ct_slice(folder / "small.dcm", np.zeros((16, 16), np.int16), series_uid="1.2.3.9")
    return folder


def ids_by_file(ws: Workspace) -> dict[str, int]:
    return {Path(r.path).name: r.id for r in ws.images()}


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([make_studies(tmp_path / "study", small=True)])
        yield ws


class GatedEngine(Engine):
    """Records which images ran; the first run waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__(build_model(SPEC), SPEC, device="cpu", batch_size=1)
        self.release = threading.Event()
        self.started = threading.Event()
        self.ran: list[str] = []

    def run(self, images: list) -> list[RawOutput]:
        self.ran += [Path(im.source).name for im in images]
        self.started.set()
        assert self.release.wait(10), "the test never released the engine"
        return super().run(images)


@pytest.fixture
def gated(ws: Workspace) -> Iterator[tuple[InferenceRunner, GatedEngine]]:
    engine = GatedEngine()
    with InferenceRunner(ws, device="cpu") as runner:
        runner.attach(engine, "v1")
        yield runner, engine
        engine.release.set()


def test_priority_order_then_fifo(ws: Workspace, gated: tuple) -> None:
    runner, engine = gated
    ids = ids_by_file(ws)
    first = runner.submit(ids["s0.dcm"], BATCH)
    assert engine.started.wait(10)  # the worker is busy with s0; the rest queue up
    later = [
        runner.submit(ids["s1.dcm"], BATCH),
        runner.submit(ids["s2.dcm"], PREFETCH),
        runner.submit(ids["s3.dcm"], ON_SCREEN),
        runner.submit(ids["s0.dcm"], PREFETCH, save=False),
    ]
    engine.release.set()
    for f in [first, *later]:
        f.result(timeout=30)
    assert engine.ran == ["s0.dcm", "s3.dcm", "s2.dcm", "s0.dcm", "s1.dcm"]


def test_cancel_before_start_never_runs(ws: Workspace, gated: tuple) -> None:
    runner, engine = gated
    ids = ids_by_file(ws)
    first = runner.submit(ids["s0.dcm"], ON_SCREEN)
    assert engine.started.wait(10)
    doomed = runner.submit(ids["s1.dcm"], ON_SCREEN)
    assert doomed.cancel()
    engine.release.set()
    first.result(timeout=30)
    runner.submit(ids["s2.dcm"]).result(timeout=30)  # the worker went past the cancelled one
    assert doomed.cancelled() and engine.ran == ["s0.dcm", "s2.dcm"]
    assert ws.revisions.history(ids["s1.dcm"]) == []


def test_close_cancels_pending_work(ws: Workspace, gated: tuple) -> None:
    runner, engine = gated
    ids = ids_by_file(ws)
    first = runner.submit(ids["s0.dcm"], ON_SCREEN)
    assert engine.started.wait(10)
    pending = runner.submit_many([ids["s1.dcm"], ids["s2.dcm"]])
    runner.close(wait=False)
    assert all(f.cancelled() for f in pending)
    engine.release.set()
    assert first.result(timeout=30).model == ("tiny", "v1")  # the one running finishes
    with pytest.raises(RuntimeError, match="closed"):
        runner.submit(ids["s3.dcm"])
    assert engine.ran == ["s0.dcm"]


def test_batch_progress_and_saved_ai_revisions(ws: Workspace) -> None:
    add_model(ws, SPEC, None)
    ids = ids_by_file(ws)
    targets = [ids[f"s{k}.dcm"] for k in range(4)]
    calls: list[tuple[int, int]] = []
    with InferenceRunner(ws, device="cpu", batch_size=3) as runner:
        assert runner.load("tiny") == "v1"
        futures = runner.submit_many(targets, on_progress=lambda d, t: calls.append((d, t)))
        proposals = [f.result(timeout=60) for f in futures]
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(p.model == ("tiny", "v1") and p.mask.shape == (64, 64) for p in proposals)
    rows = {r.id: r for r in ws.images()}
    for image_id, p in zip(targets, proposals, strict=True):
        mask = ws.revisions.original(image_id, "mask")
        labels = ws.revisions.original(image_id, "labels")
        assert (mask.model_name, mask.model_version, mask.source) == ("tiny", "v1", "ai")
        assert {"finding", "probability", "uncertainty", "gate"} <= set(mask.summary)
        assert set(labels.summary["probabilities"]) == {"lesion"}
        assert rows[image_id].ai_uncertainty == pytest.approx(p.uncertainty)
        assert rows[image_id].ai_finding is p.gate.finding
        assert sorted(p.extra["revisions"]) == [mask.id, labels.id]


def test_bad_images_fail_only_their_own_future(ws: Workspace, tmp_path: Path) -> None:
    ids = ids_by_file(ws)
    (tmp_path / "study" / "s3.dcm").unlink()
    with InferenceRunner(ws, device="cpu") as runner:
        runner.attach(Engine(build_model(SPEC), SPEC, device="cpu"), "v0")
        small = runner.submit(ids["small.dcm"])
        gone = runner.submit(ids["s3.dcm"], PREFETCH)
        fine = runner.submit_many([ids["s1.dcm"], ids["s2.dcm"], ids["s3.dcm"]])
        with pytest.raises(InferenceError, match="is 16x16; tiny needs at least 32x32"):
            small.result(timeout=30)
        with pytest.raises(ImageLoadError, match=r"s3\.dcm: file no longer exists"):
            gone.result(timeout=30)
        assert fine[0].result(timeout=30).mask.shape == (64, 64)
        assert fine[1].result(timeout=30).mask.shape == (64, 64)
        with pytest.raises(ImageLoadError, match="file no longer exists"):
            fine[2].result(timeout=30)
    assert ws.revisions.history(ids["small.dcm"]) == []


def add_two_stage(ws: Workspace, threshold: float) -> None:
    classifier = {"name": "triage", "task": "classification", "encoder": "mobilenet_v2"}
    classifier |= {"labels": ["lesion"], "input": {"size": [64, 64]}}
    add_model(ws, ModelSpec.from_dict(classifier), None)
    gate = {"type": "two_stage", "model": "triage", "threshold": threshold}
    add_model(ws, ModelSpec.from_dict({**TINY, "name": "seg", "gate": gate}), None)


def test_two_stage_gate_loads_the_classifier(ws: Workspace) -> None:
    add_two_stage(ws, threshold=0.0)  # always passes: the segmenter runs
    image = ids_by_file(ws)["s0.dcm"]
    with InferenceRunner(ws, device="cpu") as runner:
        runner.load("seg")
        proposal = runner.submit(image).result(timeout=30)
    assert proposal.gate.rule == "two_stage" and proposal.gate.finding
    assert "classifier triage" in ws.revisions.original(image).summary["gate"]["detail"]


def test_two_stage_gate_rejects_without_running_the_segmenter(ws: Workspace) -> None:
    add_two_stage(ws, threshold=1.0)  # never passes
    image = ids_by_file(ws)["s0.dcm"]
    with InferenceRunner(ws, device="cpu") as runner:
        runner.load("seg")
        proposal = runner.submit(image).result(timeout=30)
    assert proposal.gate.rule == "two_stage" and not proposal.gate.finding
    assert not proposal.mask.any()


def test_frame_refs_and_images_as_targets(ws: Workspace) -> None:
    image_id = ids_by_file(ws)["s2.dcm"]
    with InferenceRunner(ws, device="cpu") as runner:
        runner.attach(Engine(build_model(SPEC), SPEC, device="cpu"), "v0")
        by_ref = runner.submit(ws.frame_ref(image_id), PREFETCH).result(timeout=30)
        image = runner.loader.image(ws.frame_ref(image_id))
        with pytest.raises(ValueError, match="pass save=False"):
            runner.submit(image)
        unsaved = runner.submit(image, save=False).result(timeout=30)
    assert by_ref.extra["image_id"] == image_id and "image_id" not in unsaved.extra
    assert len(ws.revisions.history(image_id)) == 2  # mask + labels, from the FrameRef only


def test_call_runs_on_the_model_worker_in_priority_order(gated) -> None:
    runner, engine = gated
    ids = list(ids_by_file(runner.ws).values())
    first = runner.submit(ids[0], BATCH)
    assert engine.started.wait(10)
    later = runner.submit(ids[1], BATCH)
    threads: list[str] = []
    cam = runner.call(lambda eng: threads.append(threading.current_thread().name) or eng.spec.name)
    engine.release.set()
    assert cam.result(10) == "tiny"
    assert threads == ["inference-tiny-v1"]
    assert first.result(10) and later.result(10)
    assert engine.ran == ["s0.dcm", "s1.dcm"]  # the call ran in between, on the same thread


def test_loading_another_version_replaces_the_worker(ws: Workspace) -> None:
    add_model(ws, SPEC, None)
    add_model(ws, SPEC, None)
    with InferenceRunner(ws, device="cpu") as runner:
        assert runner.load("tiny", "v1") == "v1"
        assert runner.load("tiny") == "v2"  # the active one, after activation of the newest
        assert runner.models == {"tiny": "v2"}
        proposal = runner.submit(ids_by_file(ws)["s0.dcm"]).result(60)
        assert proposal.model == ("tiny", "v2")
