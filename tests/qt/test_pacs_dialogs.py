"""Open from PACS and Send to PACS against a real Orthanc (tests/pacs/conftest.py): search, the
study's series, a wrong password, retrieve into the worklist, cancel by closing, send of an
approved mask as a SEG; every network call on the PACS thread, never the GUI's."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medviewer.pacs import remote
from medviewer.pacs.nodes import NodeBook, PacsNode
from tests.pacs import conftest as pacs
from tests.pacs.conftest import CT_STUDY, MR_STUDY, PASSWORD, USER, Orthanc, _request

orthanc = pacs.orthanc  # the fixtures: one real Orthanc, and its password in the environment
pacs_secret = pacs.pacs_secret

NETWORK = ("echo", "find_studies", "find_series", "retrieve", "store")


@pytest.fixture
def node(orthanc: Orthanc, pacs_secret: str, monkeypatch, tmp_path: Path) -> PacsNode:
    """The test Orthanc saved as node "orthanc", in this test's own settings file."""
    monkeypatch.setenv("MEDVIEWER_PACS_NODES", str(tmp_path / "pacs_nodes.json"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    saved = PacsNode("orthanc", url=orthanc.url, auth="basic", user=USER, secret_env=pacs_secret)
    NodeBook().add(saved)
    return saved


class _Watched:
    """A connection whose network calls note the thread they run on, then do the real thing."""

    def __init__(self, conn: Any, calls: list[tuple[str, str]], before: Callable | None) -> None:
        self._conn, self._calls, self._before = conn, calls, before
        self.node = conn.node

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._conn, name)
        if name not in NETWORK:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, threading.current_thread().name))
            if self._before is not None:
                self._before(name)
            return real(*args, **kwargs)

        return call


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, str]]:
    """(call, thread name) of every network call the dialogs make, through remote.connect."""
    made: list[tuple[str, str]] = []
    real = remote.connect
    monkeypatch.setattr(remote, "connect", lambda n: _Watched(real(n), made, None))
    return made


def _search(qtbot, dialog, **fields: str) -> None:
    for name, value in fields.items():
        getattr(dialog, name).setText(value)
    dialog.search_button.click()
    qtbot.waitUntil(lambda: not dialog.worker.busy, timeout=10_000)


def _rows(dialog) -> list[str]:
    tree = dialog.results
    return [tree.topLevelItem(k).text(0) for k in range(tree.topLevelItemCount())]


def test_search_series_and_echo_run_off_the_gui_thread(window, qtbot, node, calls) -> None:
    dialog = window.open_from_pacs()
    assert dialog.picker.combo.currentText() == "orthanc"
    dialog.picker.test_button.click()
    assert dialog.worker.busy and not dialog.search_button.isEnabled()  # returns at once
    qtbot.waitUntil(lambda: "answered in" in dialog.status.text(), timeout=10_000)
    _search(qtbot, dialog, patient_id="PACS-*")
    assert _rows(dialog) == [CT_STUDY.patient_id, MR_STUDY.patient_id]
    study = dialog.results.topLevelItem(0)
    assert [study.text(c) for c in (2, 3, 5)] == [CT_STUDY.date, "CT", "1 / 1"]
    assert dialog.status.text() == "2 studies on orthanc"
    _search(qtbot, dialog, patient_id="", date_from="20240101", date_to="20241231")
    assert _rows(dialog) == [CT_STUDY.patient_id]
    dialog.results.topLevelItem(0).setExpanded(True)  # asks for the study's series
    qtbot.waitUntil(lambda: dialog.results.topLevelItem(0).childCount() == 1, timeout=10_000)
    series = dialog.results.topLevelItem(0).child(0)
    assert (series.text(3), series.text(5)) == ("CT", "1")
    dialog.results.setCurrentItem(series)
    assert dialog.chosen() == (CT_STUDY.study_uid, CT_STUDY.study_uid + ".1")
    assert dialog.retrieve_button.isEnabled()
    assert [c for c, _ in calls] == ["echo", "find_studies", "find_studies", "find_series"]
    assert all(t.startswith("pacs") for _, t in calls), calls
    assert threading.current_thread().name not in {t for _, t in calls}


def test_bad_password_and_bad_date_show_a_line_and_the_dialog_keeps_working(
    window, qtbot, node, pacs_secret, monkeypatch
) -> None:
    dialog = window.open_from_pacs()
    monkeypatch.setenv(pacs_secret, "wrong")
    _search(qtbot, dialog, patient_id="PACS-*")
    assert "orthanc" in dialog.status.text() and "401" in dialog.status.text()
    assert "Traceback" not in dialog.status.text() and _rows(dialog) == []
    _search(qtbot, dialog, date_from="2024-01-01")
    assert "expected YYYYMMDD" in dialog.status.text()
    monkeypatch.setenv(pacs_secret, PASSWORD)
    _search(qtbot, dialog, date_from="")
    assert _rows(dialog) == [CT_STUDY.patient_id, MR_STUDY.patient_id]
    assert dialog.search_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_unreadable_node_settings_are_a_line_not_a_crash(window, monkeypatch, tmp_path) -> None:
    broken = tmp_path / "pacs_nodes.json"
    broken.write_text('{"nodes": [{"name": ')  # truncated
    monkeypatch.setenv("MEDVIEWER_PACS_NODES", str(broken))
    dialog = window.open_from_pacs()
    assert "cannot be read" in dialog.status.text() and str(broken) in dialog.status.text()
    assert dialog.picker.combo.count() == 0
    dialog.search_button.click()  # no node: said, nothing started
    assert not dialog.worker.busy and "cannot be read" in dialog.status.text()


def test_retrieve_fills_the_worklist(window, qtbot, node, calls) -> None:
    pytest.importorskip("medviewer.pacs.transfer")
    before = window.worklist.model.rowCount()
    dialog = window.open_from_pacs()
    _search(qtbot, dialog, patient_id=CT_STUDY.patient_id)
    dialog.results.setCurrentItem(dialog.results.topLevelItem(0))
    dialog.retrieve_button.click()
    qtbot.waitUntil(lambda: not dialog.worker.busy, timeout=15_000)
    assert dialog.status.text().startswith("retrieved 1 instance(s)"), dialog.status.text()
    rows = window.worklist.model.rows
    assert len(rows) == before + 1
    assert CT_STUDY.patient_id in {r.patient_id for r in rows}
    assert dialog.added == 1 and dialog.bar.value() == dialog.bar.maximum()
    assert [c for c, _ in calls] == ["find_studies", "find_series", "retrieve"]
    assert all(t.startswith("pacs") for _, t in calls), calls


def test_closing_the_dialog_cancels_the_retrieve(window, qtbot, node, monkeypatch) -> None:
    pytest.importorskip("medviewer.pacs.transfer")
    entered, gate = threading.Event(), threading.Event()

    def hold(name: str) -> None:
        if name == "retrieve":
            entered.set()
            gate.wait(10)  # the transfer is "in flight" until the test closes the dialog

    made: list[tuple[str, str]] = []
    real = remote.connect
    monkeypatch.setattr(remote, "connect", lambda n: _Watched(real(n), made, hold))
    before = window.worklist.model.rowCount()
    dialog = window.open_from_pacs()
    _search(qtbot, dialog, patient_id=CT_STUDY.patient_id)
    dialog.results.setCurrentItem(dialog.results.topLevelItem(0))
    dialog.retrieve_button.click()
    qtbot.waitUntil(entered.is_set, timeout=10_000)
    assert dialog.cancel_button.isEnabled()
    dialog.close()  # returns while the transfer still runs: nothing on the GUI thread waits
    assert dialog.worker.cancel.is_set() and dialog.worker.busy
    gate.set()
    qtbot.waitUntil(lambda: not dialog.worker.busy, timeout=10_000)
    assert dialog.status.text().startswith("cancelled")
    assert window.worklist.model.rowCount() == before
    dialog = window.open_from_pacs()  # opens again, and works
    assert dialog.isVisible() and dialog.search_button.isEnabled()


def _segs_of_study(orthanc: Orthanc, study_uid: str) -> list[dict]:
    studies = json.loads(_request(orthanc.http_port, "/studies?expand"))
    ids = [s["ID"] for s in studies if s["MainDicomTags"]["StudyInstanceUID"] == study_uid]
    series = [
        s
        for i in ids
        for s in json.loads(_request(orthanc.http_port, f"/studies/{i}/series?expand"))
    ]
    return [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]


def test_send_an_approved_mask_puts_a_seg_on_orthanc(window, qtbot, node, calls, orthanc) -> None:
    pytest.importorskip("medviewer.pacs.transfer")
    ws = window.ws
    image = ws.images()[0]
    mask = np.zeros((64, 80), np.uint8)
    mask[10:20, 10:30] = 1
    ws.revisions.save_mask(image.id, mask, source="human", author="dr.test")
    ws.revisions.set_status(image.id, "approved", author="dr.test")
    assert _segs_of_study(orthanc, image.study_uid) == []
    dialog = window.send_to_pacs()
    assert dialog.count.text() == "1 approved result(s)"
    assert dialog.chosen() == [image.id]
    dialog.send_button.click()
    qtbot.waitUntil(lambda: not dialog.worker.busy, timeout=20_000)
    assert dialog.status.text().startswith("sent 1 object(s) for 1 image(s) to orthanc")
    (seg,) = _segs_of_study(orthanc, image.study_uid)
    assert seg["MainDicomTags"]["Modality"] == "SEG"
    assert [c for c, _ in calls] == ["store"] and calls[0][1].startswith("pacs")


def test_send_anonymised_uses_the_workspace_mapping(window, qtbot, node, orthanc) -> None:
    pytest.importorskip("medviewer.pacs.transfer")
    from medviewer.deid.mapping import Mapping
    from medviewer.workspace.export.anonymised import MAPPING

    ws = window.ws
    image = ws.images()[1]
    mask = np.zeros((64, 80), np.uint8)
    mask[30:40, 5:15] = 1
    ws.revisions.save_mask(image.id, mask, source="human", author="dr.test")
    dialog = window.send_to_pacs()
    assert dialog.count.text() == "0 approved result(s)"
    dialog.send_button.click()  # nothing approved: said, nothing started
    assert not dialog.worker.busy and "no approved result" in dialog.status.text()
    ws.revisions.set_status(image.id, "approved", author="dr.test")
    dialog = window.send_to_pacs()  # the same dialog, its list read again
    assert dialog.chosen() == [image.id]
    dialog.anonymise.setChecked(True)
    dialog.send_button.click()
    qtbot.waitUntil(lambda: not dialog.worker.busy, timeout=20_000)
    assert dialog.status.text().startswith("sent "), dialog.summary.toPlainText()
    mapping = Mapping.open(ws.root / MAPPING)
    pseudonym = mapping.patients[image.patient_id].pseudonym
    (seg,) = _segs_of_study(orthanc, mapping.uid(image.study_uid))
    study = json.loads(_request(orthanc.http_port, f"/studies/{seg['ParentStudy']}"))
    assert study["PatientMainDicomTags"]["PatientID"] == pseudonym != image.patient_id
