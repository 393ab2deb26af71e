"""The app's inference host (`RunnerHost`) reads the database off the GUI thread: whether an
image opened already has a proposal, which models apply to each worklist row (the Model
column), and the heatmap's image (on a team's PostgreSQL server each query is a round trip
that froze the window)."""

from __future__ import annotations

import numpy as np

from medviewer.qt.panels.worklist import MODEL_COLUMN
from tests.qt.test_ai_in_app import with_model  # noqa: F401 - a fixture used below
from tests.qt.test_window_reads import gui_queries  # noqa: F401 - a fixture used below


def test_an_image_opened_is_proposed_for_without_a_gui_thread_query(
    with_model,  # noqa: F811
    qtbot,
    gui_queries,  # noqa: F811
    tmp_path,
) -> None:
    """Its callbacks measured too, once the window's own proposals (and their callbacks,
    which read the review's state) are done."""
    import cv2

    window = with_model
    first = window.review.state.image.id
    qtbot.waitUntil(lambda: window.jobs_label.text() == "", timeout=60_000)  # prefetch done
    qtbot.wait(200)
    new = tmp_path / "new" / "slice.png"
    new.parent.mkdir()
    cv2.imwrite(str(new), np.full((64, 80), 100, np.uint8))
    window.ws.import_paths([new.parent])
    fresh = next(r.id for r in window.ws.images() if r.path.endswith("slice.png"))
    proposed: list[int] = []
    with gui_queries() as calls:
        window.host.propose(fresh, on_screen=True, then=proposed.append)  # not yet proposed
        window.host.propose(first, on_screen=True, then=proposed.append)  # already proposed
        qtbot.waitUntil(lambda: proposed == [fresh], timeout=60_000)
    assert calls == []
    assert window.ws.revisions.has_proposal(fresh, "tiny", "v1")


def test_the_model_column_is_read_once_for_the_rows_drawn_off_the_gui_thread(
    with_model,  # noqa: F811
    qtbot,
    gui_queries,  # noqa: F811
    monkeypatch,
) -> None:
    window, model = with_model, with_model.worklist.model
    window.host._refs.clear()  # as for rows nobody opened yet
    model.forget_models()
    reads: list[list[int]] = []
    frame_refs = window.ws.frame_refs
    monkeypatch.setattr(window.ws, "frame_refs", lambda ids: reads.append(ids) or frame_refs(ids))

    def cells() -> list[str]:
        return [model.data(model.index(i, MODEL_COLUMN)) for i in range(model.rowCount())]

    with gui_queries() as calls:
        assert cells() == [""] * len(model.rows)  # not known yet: asked for, all at once
        qtbot.waitUntil(lambda: cells() == ["tiny"] * len(model.rows), timeout=10_000)
        window.worklist.table.viewport().repaint()  # drawn again: nothing more is read
    assert calls == []
    assert reads == [sorted(r.id for r in model.rows)]


def test_the_heatmap_reads_its_image_off_the_gui_thread(
    with_model,  # noqa: F811
    qtbot,
    gui_queries,  # noqa: F811
) -> None:
    window = with_model
    with gui_queries() as calls:
        window.toggle_heatmap()
        qtbot.waitUntil(lambda: window._heat_for is not None, timeout=60_000)
    assert calls == []
    assert window.view.heat_item.isVisible()
