"""Inference runs on workers: with a deliberately slow model the GUI keeps answering."""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from medviewer.inference.engine import Engine
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model

SLOW_SECONDS = 2.0
SPEC = {
    "name": "slow",
    "task": "segmentation+classification",
    "architecture": "FPN",
    "encoder": "mobilenet_v2",
    "classes": ["background", "finding"],
    "labels": ["finding"],
    "input": {"size": [64, 64]},
}


@pytest.fixture
def slow_model(window, qtbot, monkeypatch):
    add_model(window.ws, ModelSpec.from_dict(SPEC), None)
    real = Engine.run

    def slow(self: Engine, images: list) -> list:
        time.sleep(SLOW_SECONDS)  # a big model on a small CPU
        return real(self, images)

    monkeypatch.setattr(Engine, "run", slow)
    window.host.start()  # load the newly added model
    qtbot.waitUntil(
        lambda: window.host.runner is not None and "slow" in window.host.versions, timeout=60_000
    )
    return window


def test_gui_answers_within_100ms_while_a_slow_model_runs(slow_model, qtbot) -> None:
    window = slow_model
    image = window.review.state.image.id
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    window.open_image(image)  # asks for a proposal: the slow model starts on its worker
    qtbot.waitUntil(
        lambda: window.host.runner is not None and window.jobs_label.text() != "", timeout=10_000
    )
    qtbot.waitUntil(lambda: window.ws.revisions.original(image) is not None, timeout=60_000)
    timer.stop()
    assert sum(gaps) >= SLOW_SECONDS  # we really measured across the slow inference
    # The model on the GUI thread would block it once for the whole SLOW_SECONDS. A shared
    # 2-core machine also deschedules a process now and then (gaps of 0.2-0.5 s seen under
    # load): a few such gaps are the machine, not us; many, or a long one, are us.
    slow = [round(g * 1000) for g in gaps if g >= 0.1]
    assert max(gaps) < SLOW_SECONDS / 2, f"event loop blocked for {max(gaps) * 1000:.0f} ms"
    assert len(slow) <= max(2, len(gaps) // 50), f"{len(slow)} of {len(gaps)} ticks late: {slow}"
    # ...and the proposal reached the screen once it was ready.
    qtbot.waitUntil(lambda: window.review.state.proposal is not None, timeout=10_000)
    assert window.labels.gate_text.text().startswith(("finding", "no finding"))


def test_scrolling_three_planes_while_a_slow_model_runs(slow_model, qtbot) -> None:
    """Issue 14: the planes are views of the loaded volume, so scrolling through them during
    inference keeps the event loop answering within the same tolerance."""
    window = slow_model
    image = window.review.state.image.id
    window.set_layout("mpr")
    qtbot.waitUntil(lambda: window.volume.review is not None, timeout=10_000)
    gaps: list[float] = []
    last = [time.perf_counter()]
    scrolled = [0]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    def scroll() -> None:  # wheel in each plane in turn, back and forth
        plane = ("axial", "coronal", "sagittal")[scrolled[0] % 3]
        window.mpr.panes[plane].box.sig_scroll.emit(1 if (scrolled[0] // 30) % 2 else -1)
        scrolled[0] += 1

    timer, wheel = QTimer(), QTimer()
    timer.timeout.connect(tick)
    wheel.timeout.connect(scroll)
    timer.start(10)
    wheel.start(15)
    window.host.propose(image, True, lambda _: None)  # the slow model starts on its worker
    qtbot.waitUntil(lambda: window.ws.revisions.original(image) is not None, timeout=60_000)
    timer.stop()
    wheel.stop()
    assert sum(gaps) >= SLOW_SECONDS and scrolled[0] > 50
    slow = [round(g * 1000) for g in gaps if g >= 0.1]
    assert max(gaps) < SLOW_SECONDS / 2, f"event loop blocked for {max(gaps) * 1000:.0f} ms"
    assert len(slow) <= max(2, len(gaps) // 50), f"{len(slow)} of {len(gaps)} ticks late: {slow}"
