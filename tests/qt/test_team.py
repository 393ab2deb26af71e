"""Two app windows on one PostgreSQL workspace, as two real logins (annotator, reviewer): each
sees the other's saves in its worklist without reopening, who else has an image open, a
concurrent edit of one image kept twice and flagged, and the annotator's Approve refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from medviewer.workspace import Workspace
from medviewer.workspace.roles import grant
from tests.qt.conftest import drag
from tests.workspace.pg_server import PostgresServer

Opener = Callable[[str], object]


@pytest.fixture
def team(
    qtbot, tmp_path: Path, postgres_server: PostgresServer, study: Path, monkeypatch
) -> Iterator[tuple[Opener, str, str]]:
    """The workspace (made by the administrator), two fresh logins, and a window opener."""
    monkeypatch.setenv("MEDVIEWER_WORKSPACE", str(tmp_path / "user" / "workspace"))
    from medviewer.qt.main_window import MainWindow

    url = postgres_server.database()
    tag = uuid.uuid4().hex[:6]
    annotator, reviewer = f"qa{tag}", f"qr{tag}"
    postgres_server.admin(f"CREATE ROLE {annotator} LOGIN; CREATE ROLE {reviewer} LOGIN")
    with Workspace.create(tmp_path / "team", database=url) as ws:
        ws.import_paths([study])
        grant(ws, annotator, "annotator")
        grant(ws, reviewer, "reviewer")
    opened: list[tuple[MainWindow, Workspace]] = []

    def open_window(login: str) -> MainWindow:
        ws = Workspace.open(url.replace("postgres@", f"{login}@"))
        settings = QSettings(str(tmp_path / f"{login}.ini"), QSettings.Format.IniFormat)
        settings.setValue("quiet_errors", True)  # no modal boxes in tests
        win = MainWindow(ws, "a typed name", settings, device="cpu")
        qtbot.addWidget(win)
        win.resize(1000, 700)
        win.show()
        opened.append((win, ws))
        return win

    yield open_window, annotator, reviewer
    for win, ws in opened:
        win.close()
        ws.close()


def _show(qtbot, win, image_id: int) -> None:
    win.open_image(image_id)
    qtbot.waitUntil(
        lambda: win.review.state is not None and win.review.state.image.id == image_id,
        timeout=10_000,
    )


def _row(win, image_id: int):
    return next(r for r in win.worklist.model.rows if r.id == image_id)


def test_each_window_sees_the_others_saves_and_who_has_the_image_open(qtbot, team) -> None:
    open_window, annotator, reviewer = team
    a, b = open_window(annotator), open_window(reviewer)
    first, second = (r.id for r in a.worklist.model.rows[:2])
    _show(qtbot, a, first)
    _show(qtbot, b, second)  # different images at once
    drag(a, [(10, 30), (40, 30)])
    a.review.save_now()
    # B's worklist follows A's save through the change feed, B never reopening anything.
    qtbot.waitUntil(lambda: _row(b, first).last_author == annotator, timeout=10_000)
    assert _row(b, first).status == "in_progress"
    drag(b, [(10, 40), (40, 40)])
    b.review.save_now()
    qtbot.waitUntil(lambda: _row(a, second).last_author == reviewer, timeout=10_000)
    # B opens A's image: it shows that A has it open; A's own line names nobody else yet.
    _show(qtbot, b, first)
    qtbot.waitUntil(lambda: b.team.view.label.text() == f"also open by {annotator}", timeout=10_000)
    assert annotator not in a.team.view.label.text()


def test_a_concurrent_edit_keeps_both_masks_and_flags_a_conflict(qtbot, team) -> None:
    open_window, annotator, reviewer = team
    a, b = open_window(annotator), open_window(reviewer)
    image = a.worklist.model.rows[0].id
    _show(qtbot, a, image)
    _show(qtbot, b, image)  # both started from the same (empty) mask
    drag(a, [(10, 30), (40, 30)])
    a.review.save_now()
    qtbot.waitUntil(lambda: a.review.last_saved is not None, timeout=10_000)
    drag(b, [(10, 50), (40, 50)])
    b.review.save_now()
    qtbot.waitUntil(lambda: b.review.last_saved is not None, timeout=10_000)
    masks = [r for r in b.ws.revisions.history(image) if r.kind == "mask"]
    assert sorted(r.author for r in masks) == sorted([annotator, reviewer])  # both kept
    assert b.ws.image(image).conflict
    # Both worklists mark it; A hears of B's mask without it replacing A's on screen.
    for win in (a, b):
        qtbot.waitUntil(lambda w=win: "conflict" in w.worklist.model.data(
            w.worklist.model.index(0, 6), 0), timeout=10_000)  # fmt: skip
    qtbot.waitUntil(
        lambda: f"{reviewer} saved a newer mask" in a.team.view.label.text(), timeout=10_000
    )
    qtbot.waitUntil(lambda: f"also open by {reviewer}" in a.team.view.label.text(), timeout=5_000)
    assert a.review.state.mask[30, 20] and not a.review.state.mask[50, 20]
    # The conflicts filter; reopening tells the reviewer both revisions exist.
    b.worklist.status.setCurrentText("Conflicts")
    qtbot.waitUntil(lambda: [r.id for r in b.worklist.model.rows] == [image], timeout=5_000)
    _show(qtbot, b, b.worklist.model.rows[0].id)
    qtbot.waitUntil(lambda: "conflict" in b.team.view.label.text(), timeout=5_000)


def test_the_annotators_approve_is_refused_in_words_and_the_app_goes_on(qtbot, team) -> None:
    open_window, annotator, _ = team
    a = open_window(annotator)
    first, second = (r.id for r in a.worklist.model.rows[:2])
    _show(qtbot, a, first)
    drag(a, [(10, 30), (40, 30)])
    a.actions_by_command["approve"].trigger()
    bar = a.statusBar()
    qtbot.waitUntil(lambda: f"{annotator} may not approve" in bar.currentMessage(), timeout=10_000)
    assert bar.currentMessage().startswith("Not allowed:")
    assert a.ws.image(first).status == "in_progress"  # the mask saved, the approval not
    assert a.ws.revisions.latest(first, "mask").author == annotator
    _show(qtbot, a, second)  # the app goes on


def test_opening_and_closing_an_image_shows_in_the_other_window_within_seconds(qtbot, team) -> None:
    """A lease opened or released wakes the other window's feed (NOTIFY medviewer_leases), not
    its next heartbeat (every 20 s)."""
    open_window, annotator, reviewer = team
    a, b = open_window(annotator), open_window(reviewer)
    first, second = (r.id for r in a.worklist.model.rows[:2])
    _show(qtbot, b, first)
    _show(qtbot, a, second)
    qtbot.waitUntil(lambda: b.team.login is not None and a.team.login is not None, timeout=5_000)
    assert b.team.view.label.text() == ""
    _show(qtbot, a, first)
    qtbot.waitUntil(lambda: b.team.view.label.text() == f"also open by {annotator}", timeout=3_000)
    _show(qtbot, a, second)  # A moves on: its lease on the first image is released
    qtbot.waitUntil(lambda: b.team.view.label.text() == "", timeout=3_000)


def test_the_filtered_worklist_gains_and_loses_rows_as_others_save(qtbot, team) -> None:
    """Another clinician's save runs the worklist's filter again for the changed images: one
    that now matches appears where the order puts it, one that no longer matches goes, except
    the image on screen."""
    open_window, annotator, reviewer = team
    a, b = open_window(annotator), open_window(reviewer)
    first, second, third = (r.id for r in a.worklist.model.rows[:3])
    _show(qtbot, a, first)
    a.worklist.status.setCurrentText("In progress")
    qtbot.waitUntil(lambda: a.worklist.model.rows == [], timeout=5_000)
    for image in (third, second):  # saved out of order: A's list keeps the worklist's order
        _show(qtbot, b, image)
        drag(b, [(10, 40), (40, 40)])
        b.review.save_now()
        qtbot.waitUntil(lambda i=image: i in [r.id for r in a.worklist.model.rows], timeout=10_000)
    assert [r.id for r in a.worklist.model.rows] == [second, third]
    a.worklist.status.setCurrentText("Unreviewed")
    qtbot.waitUntil(lambda: [r.id for r in a.worklist.model.rows] == [first], timeout=5_000)
    _show(qtbot, b, first)  # B saves the image on A's screen: no longer unreviewed, yet kept
    drag(b, [(10, 50), (40, 50)])
    b.review.save_now()
    qtbot.waitUntil(lambda: _row(a, first).status == "in_progress", timeout=10_000)
    assert [r.id for r in a.worklist.model.rows] == [first]


def test_the_annotators_activation_is_refused_in_words_off_the_gui_thread(qtbot, team) -> None:
    from medviewer.models.versions import add_model
    from tests.qt.test_ai_in_app import SPEC

    open_window, annotator, reviewer = team
    a, b = open_window(annotator), open_window(reviewer)
    add_model(b.ws, SPEC, None)  # the reviewer registers two versions
    add_model(b.ws, SPEC, None, activate=False)
    a._activate_model("tiny", "v2")  # the window's worker asks; the server refuses
    bar = a.statusBar()
    qtbot.waitUntil(lambda: bar.currentMessage().startswith("Not allowed:"), timeout=10_000)
    assert a.ws.models.active_versions() == {"tiny": "v1"}
    b._activate_model("tiny", "v2")  # the reviewer may
    qtbot.waitUntil(lambda: b.ws.models.active_versions() == {"tiny": "v2"}, timeout=10_000)
