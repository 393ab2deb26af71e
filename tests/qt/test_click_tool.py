"""The AI click tool (issue 15) by real mouse events and keys: each click re-runs a
click-guided model on its worker, Backspace / Escape / Enter, one human revision with the clicks.

The test model answers "all foreground" wherever it looks (its segmentation head is a constant),
so its answer shows exactly the region the core's crop gave it around the clicks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PySide6.QtCore import QEvent, QPoint, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from medviewer.inference import guided
from medviewer.inference.clicks import crop_box
from medviewer.inference.engine import Engine
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from tests.qt.conftest import view_point

SLOW_SECONDS = 2.0  # as test_never_freeze: its tolerance, not a tighter one

SPEC = {
    "name": "guided",
    "task": "segmentation",
    "architecture": "FPN",
    "encoder": "mobilenet_v2",
    "classes": ["background", "finding"],
    "input": {"size": [64, 64]},
    "guidance": "clicks",
}


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    """Built once for the module (a model load takes seconds); each test's runner gets it."""
    return {}


def _register(window, qtbot, engines: dict[str, Engine], spec: dict) -> str:
    """A constant 'finding everywhere' model on the window's runner, as version v1 (attached,
    not activated: activation would ask it for a proposal of the image on screen)."""
    qtbot.waitUntil(lambda: window.host.runner is not None, timeout=60_000)  # the first start
    name = spec["name"]
    if name not in engines:
        model_spec = ModelSpec.from_dict(spec)
        model = build_model(model_spec, pretrained=False)
        head = model.net.segmentation_head[0]
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(8.0)
        engines[name] = Engine(model.eval(), model_spec, device="cpu", backend="torch")
    window.host.runner.attach(engines[name], "v1")
    window.host.versions[name] = "v1"
    window.click_tool.update_available()
    return name


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, int]]:
    """The core function wrapped: (thread name, number of clicks) of each call."""
    seen: list[tuple[str, int]] = []
    real = guided.propose_with_clicks

    def wrapper(engine, image, version, clicks, prev_mask=None):
        seen.append((threading.current_thread().name, len(clicks)))
        return real(engine, image, version, clicks, prev_mask)

    monkeypatch.setattr(guided, "propose_with_clicks", wrapper)
    return seen


@pytest.fixture
def clicking(window, qtbot, calls, engines):
    _register(window, qtbot, engines, SPEC)
    action = window.tool_actions["click"]
    qtbot.waitUntil(action.isEnabled, timeout=10_000)
    assert not window.review.session.mask.any()  # no proposal asked for: the mask is empty
    window.activateWindow()  # the keys are the window's shortcuts
    qtbot.waitUntil(window.isActiveWindow, timeout=10_000)
    qtbot.keyClick(window, Qt.Key.Key_K)
    assert window.tools.tool == "click" and action.isChecked()
    return window


def click(win, x: float, y: float, button=Qt.MouseButton.LeftButton, modifiers=None) -> None:
    """Press and release at image pixel (x, y) on the view's viewport, as a hand clicks."""
    vp = win.view.viewport()
    pos = view_point(win, x, y)
    mods = modifiers or Qt.KeyboardModifier.NoModifier
    for kind, buttons in (
        (QEvent.Type.MouseButtonPress, button),
        (QEvent.Type.MouseButtonRelease, Qt.MouseButton.NoButton),
    ):
        event = QMouseEvent(kind, QPoint(pos), vp.mapToGlobal(pos), button, buttons, mods)
        QApplication.sendEvent(vp, event)


def _shown(win) -> np.ndarray:
    return win.view.mask_item.mask


def _wait_runs(win, qtbot, n: int) -> None:
    tool = win.click_tool
    qtbot.waitUntil(lambda: tool.runs == n and tool._running is None, timeout=60_000)


def test_left_click_runs_the_model_off_the_gui_thread_and_shows_its_answer(
    clicking, qtbot, calls
) -> None:
    window = clicking
    click(window, 40.5, 30.5)
    _wait_runs(window, qtbot, 1)
    assert len(calls) == 1
    thread, n = calls[0]
    assert n == 1 and thread.startswith("inference-guided") and thread != "MainThread"
    # The answer covers the core's crop around the click, and only it; the session is not
    # touched until Enter.
    box = crop_box((64, 80), window.click_tool.state.clicks)
    expected = np.zeros((64, 80), np.uint8)
    expected[box.slices] = 1
    assert np.array_equal(_shown(window), expected) and box.shape == (32, 40)
    assert not window.review.session.mask.any()
    clicks = window.click_tool.state.clicks
    assert [(c.row, c.col, c.positive) for c in clicks] == [(30, 40, True)]
    assert len(window.click_tool.dots.data) == 1


def test_right_and_ctrl_clicks_are_outside_points_and_backspace_removes_the_last(
    clicking, qtbot, calls
) -> None:
    window = clicking
    click(window, 40.5, 30.5)
    _wait_runs(window, qtbot, 1)
    one_click = _shown(window).copy()
    click(window, 44.5, 33.5, Qt.MouseButton.RightButton)
    _wait_runs(window, qtbot, 2)
    click(window, 20.5, 20.5, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier)
    _wait_runs(window, qtbot, 3)
    assert [c.positive for c in window.click_tool.state.clicks] == [True, False, False]
    assert [n for _, n in calls] == [1, 2, 3]
    brushes = [b.color().name() for b in window.click_tool.dots.data["brush"]]
    assert brushes == ["#3fb950", "#f85149", "#f85149"]  # inside green, outside red
    # The crop grows with the clicks and the previous answer: more of the image is "finding".
    assert _shown(window).sum() > one_click.sum()
    assert window.tools.value == 1 and window.view.image is not None
    qtbot.keyClick(window, Qt.Key.Key_Backspace)
    qtbot.keyClick(window, Qt.Key.Key_Backspace)
    assert len(window.click_tool.state.clicks) == 1 and len(window.click_tool.dots.data) == 1
    qtbot.waitUntil(lambda: np.array_equal(_shown(window), one_click), timeout=10_000)


def test_escape_restores_the_mask_before_the_first_click(clicking, qtbot) -> None:
    window = clicking
    before = window.review.session.mask.copy()
    click(window, 40.5, 30.5)
    _wait_runs(window, qtbot, 1)
    assert not np.array_equal(_shown(window), before)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert window.click_tool.state is None and len(window.click_tool.dots.data) == 0
    assert _shown(window) is window.review.session.mask and np.array_equal(_shown(window), before)
    assert not window.review.session.dirty


def test_enter_saves_one_human_revision_with_the_clicks_and_one_undo_step(clicking, qtbot) -> None:
    window = clicking
    ws, image = window.ws, window.review.state.image.id
    before = len(ws.revisions.history(image))
    click(window, 40.5, 30.5)
    click(window, 44.5, 33.5, Qt.MouseButton.RightButton)  # maybe while the first still runs
    qtbot.waitUntil(
        lambda: (
            window.click_tool.state is not None
            and window.click_tool.state.shown == tuple(window.click_tool.state.clicks)
            and len(window.click_tool.state.clicks) == 2
        ),
        timeout=60_000,
    )
    answer = _shown(window).copy()
    qtbot.keyClick(window, Qt.Key.Key_Return)
    assert window.click_tool.state is None
    window.workers.saver.submit(lambda: None).result()  # the save queued by Enter
    qtbot.waitUntil(lambda: not window.review.session.dirty, timeout=10_000)
    history = ws.revisions.history(image)
    assert len(history) == before + 1
    rev = history[-1]
    assert rev.source == "human" and rev.author == "dr.test"
    assert np.array_equal(ws.revisions.read_mask(rev), answer)
    assert rev.summary["click_model"] == {"name": "guided", "version": "v1"}
    assert rev.summary["clicks"] == [
        {"row": 30, "col": 40, "positive": True, "class": 1},
        {"row": 33, "col": 44, "positive": False, "class": 1},
    ]
    assert ws.revisions.confirmed(image).revision.id == rev.id  # training data from now on
    assert np.array_equal(window.review.session.mask, answer)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not window.review.session.mask.any()  # one undo step takes all the clicks back
    window.review.save_now()  # the undo saved before the window closes
    qtbot.waitUntil(lambda: not window.review.session.dirty, timeout=10_000)


def test_tool_is_disabled_for_an_unguided_model(window, qtbot, engines) -> None:
    action = window.tool_actions["click"]
    assert not action.isEnabled()  # models still loading, or none
    unguided = {k: v for k, v in SPEC.items() if k != "guidance"} | {"name": "plain"}
    _register(window, qtbot, engines, unguided)
    assert window.host.models_for(window.review.state.image.id) == ["plain"]
    assert not action.isEnabled()
    assert action.toolTip() == "AI click: no click-guided model applies to this image (K)"
    qtbot.keyClick(window, Qt.Key.Key_K)
    assert window.tools.tool == "brush"
    assert not window.click_tool.add_click(30, 40, True)  # and no way round it


def test_clicks_during_a_slow_run_queue_only_the_newest_and_the_gui_answers(
    clicking, qtbot, calls, monkeypatch
) -> None:
    window = clicking
    wrapped = guided.propose_with_clicks

    def slow(*args, **kwargs):
        time.sleep(SLOW_SECONDS)  # a big model on a small CPU
        return wrapped(*args, **kwargs)

    monkeypatch.setattr(guided, "propose_with_clicks", slow)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    click(window, 40.5, 30.5)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=10_000)  # the first run is on its worker
    click(window, 44.5, 33.5, Qt.MouseButton.RightButton)
    click(window, 30.5, 25.5)
    assert window.click_tool.runs == 1  # queued, not run
    _wait_runs(window, qtbot, 2)
    timer.stop()
    assert [n for _, n in calls] == [1, 3]  # the middle state was never run: no backlog
    assert window.click_tool.state.shown == tuple(window.click_tool.state.clicks)
    assert sum(gaps) >= 2 * SLOW_SECONDS
    slow_ticks = [round(g * 1000) for g in gaps if g >= 0.1]
    assert max(gaps) < SLOW_SECONDS / 2, f"event loop blocked for {max(gaps) * 1000:.0f} ms"
    assert len(slow_ticks) <= max(2, len(gaps) // 50), f"{len(slow_ticks)} late: {slow_ticks}"


MULTI = {
    **SPEC,
    "name": "guided-kidneys",
    "classes": ["background", "left", "right"],
    "guidance_zoom": False,  # as the demo's kidney model: the whole image with clicks too
}


def test_a_multi_class_model_answers_for_the_active_class_on_the_whole_image(
    window, qtbot, engines, monkeypatch
) -> None:
    name = _register(window, qtbot, engines, MULTI)
    head = engines[name].model.net.segmentation_head[0]
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.0, 0.0, 8.0]))  # "right" everywhere it looks
    asked: list[list] = []
    real = guided.propose_with_clicks

    def wrapper(engine, image, version, clicks, prev_mask=None):
        asked.append(list(clicks))
        return real(engine, image, version, clicks, prev_mask)

    monkeypatch.setattr(guided, "propose_with_clicks", wrapper)
    action = window.tool_actions["click"]
    qtbot.waitUntil(action.isEnabled, timeout=10_000)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=10_000)
    qtbot.keyClick(window, Qt.Key.Key_2)  # the active class: "right"
    qtbot.keyClick(window, Qt.Key.Key_K)
    click(window, 40.5, 30.5)
    _wait_runs(window, qtbot, 1)
    assert [(c.class_value, c.positive) for c in asked[0]] == [(2, True)]
    # No zoomed crop: the model's answer, class 2, covers the whole image.
    assert (_shown(window) == 2).all()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert not _shown(window).any()
