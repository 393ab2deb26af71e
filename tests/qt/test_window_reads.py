"""The main window's database work runs off the GUI thread (on a PostgreSQL server across a
network each query is a round trip that would freeze the window): every use of the workspace's
connection (`Workspace.db`, the one entry point of its SQL) is recorded with its thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PySide6.QtWidgets import QLabel

from medviewer.models.versions import add_model
from medviewer.workspace import Workspace
from tests.qt.conftest import drag
from tests.qt.test_ai_in_app import SPEC, with_model  # noqa: F401 - a fixture used below


@pytest.fixture
def gui_queries(monkeypatch) -> Iterator:
    """`with gui_queries():` the list of queries the GUI thread made inside the block."""
    real = Workspace.db.fget
    recording: list[list[str]] = []

    def db(self: Workspace):  # type: ignore[no-untyped-def]
        if recording and threading.current_thread() is threading.main_thread():
            recording[-1].append("query on the GUI thread")
        return real(self)

    monkeypatch.setattr(Workspace, "db", property(db))

    @contextmanager
    def block() -> Iterator[list[str]]:
        calls: list[str] = []
        recording.append(calls)
        try:
            yield calls
        finally:
            recording.remove(calls)

    return block


def _row(window, image_id: int):
    return next(r for r in window.worklist.model.rows if r.id == image_id)


def test_a_saved_rows_refresh_reads_off_the_gui_thread(window, qtbot, gui_queries) -> None:
    image = window.review.state.image.id
    drag(window, [(10, 30), (40, 30)])
    window.review.save_now()
    qtbot.waitUntil(
        lambda: window.truth_label.text() == "mask confirmed by dr.test", timeout=10_000
    )
    window.ws.revisions.set_status(image, "rejected", author="dr.other")  # elsewhere, say
    with gui_queries() as calls:
        window._refresh_row(image)
    assert calls == []
    qtbot.waitUntil(lambda: _row(window, image).status == "rejected", timeout=10_000)
    qtbot.waitUntil(lambda: window.truth_label.text() == "mask not confirmed", timeout=10_000)


def test_the_corners_place_in_the_series_is_read_off_the_gui_thread(
    window, qtbot, gui_queries
) -> None:
    second = window.ws.images()[1].id
    window.open_image(second)
    qtbot.waitUntil(lambda: window.review.state.image.id == second, timeout=10_000)
    qtbot.waitUntil(lambda: "Slice 2/3" in window.corners.text("bottom_left"), timeout=10_000)
    state, image = window.review.state, window.review.image
    first = window.ws.image(window.ws.images()[0].id)
    state.image = first  # as if the first slice had just loaded
    with gui_queries() as calls:
        window._update_look(state, image, None)
    assert calls == []
    # Never the previous image's place beside this one's patient: it comes when it is read.
    qtbot.waitUntil(lambda: "Slice 1/3" in window.corners.text("bottom_left"), timeout=10_000)
    assert "Test, Patient" in window.corners.text("top_left")
    window._update_look(state, image, None)  # the same image again (a proposal shown)
    assert "Slice 1/3" in window.corners.text("bottom_left")  # its place kept, no flicker


def test_activating_a_version_writes_off_the_gui_thread(window, qtbot, gui_queries) -> None:
    add_model(window.ws, SPEC, None)
    add_model(window.ws, SPEC, None, activate=False)  # v2
    with gui_queries() as calls:
        window._activate_model("tiny", "v2")
        window._model_activated("tiny", "v2")  # what the activation listener then runs
    assert calls == []
    qtbot.waitUntil(lambda: window.ws.models.active_versions().get("tiny") == "v2", timeout=10_000)
    qtbot.waitUntil(
        lambda: any("tiny</b> v2" in w.text() for w in window.models.findChildren(QLabel)),
        timeout=10_000,
    )


def test_the_poll_for_versions_activated_elsewhere_reads_off_the_gui_thread(
    request, qtbot, gui_queries
) -> None:
    window = request.getfixturevalue("with_model")  # a tiny model loaded and proposing
    add_model(window.ws, SPEC, None, activate=False)  # v2
    with Workspace.open(window.ws.root) as other:  # a training job or the CLI, say
        other.models.activate("tiny", "v2")
    with gui_queries() as calls:
        window._poll_activations()
    assert calls == []
    qtbot.waitUntil(lambda: window.host.runner.models.get("tiny") == "v2", timeout=30_000)


def test_the_wheel_goes_through_the_series_without_a_gui_thread_query(
    window, qtbot, gui_queries, monkeypatch
) -> None:
    """Which slice the wheel opens is known without a query (opening it is the review's and
    the runner's business, not measured here)."""
    first, second, third = (r.id for r in window.ws.images()[:3])
    assert window.review.state.image.id == first
    opened: list[int] = []
    monkeypatch.setattr(window, "open_image", opened.append)
    with gui_queries() as calls:
        window.scroll_slices(1)  # at once after the load: its series may still be being read
    assert calls == []
    qtbot.waitUntil(lambda: opened == [second], timeout=10_000)  # once the series was read
    with gui_queries() as calls:
        window.scroll_slices(-1)
        window.scroll_slices(2)
    assert calls == []
    assert opened == [second, third]  # the first slice has none before it


def test_the_label_names_of_an_image_without_ai_results_come_without_a_query(
    request, qtbot, gui_queries
) -> None:
    """The model list is the window's read; which loaded models apply, the runner host's
    (from the image's file record, read when it was loaded)."""
    window = request.getfixturevalue("with_model")
    state = window.review.state
    state.ai_labels = state.proposal_revision = None  # as before the model has run on it
    state.labels = {}
    qtbot.waitUntil(
        lambda: any("tiny</b> v1" in w.text() for w in window.models.findChildren(QLabel)),
        timeout=10_000,
    )
    with gui_queries() as calls:
        names = window._label_names(state)
    assert calls == []
    assert names == ["finding"]


def test_a_proposal_for_the_image_on_screen_is_read_off_the_gui_thread(
    request, qtbot, gui_queries
) -> None:
    """The runner's answer for the image shown: the review reads it (the proposal, the AI
    labels, the mask to edit) on its loader thread and shows it when read."""
    window = request.getfixturevalue("with_model")
    image = window.review.state.image.id
    qtbot.waitUntil(lambda: window.review.state.proposal is not None, timeout=60_000)
    window.review.state.proposal = None  # as before the answer was read
    with gui_queries() as calls:
        window.review._proposal_ready(image)
        qtbot.waitUntil(lambda: window.review.state.proposal is not None, timeout=10_000)
    assert calls == []
