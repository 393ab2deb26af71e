"""Retrieve into a workspace and send approved results back, against a real Orthanc
(tests/pacs/conftest.py): `retrieve_into` / `send_results` and `medviewer pacs get|send|find`,
checked through Orthanc's REST API (the SEG is in the study and references its image; an
anonymised send leaves no PHI on the PACS and its SEG references the anonymised copy)."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.cli import main
from medviewer.deid.mapping import Mapping
from medviewer.pacs.dicomweb import DicomWebNode
from medviewer.pacs.transfer import approved_images, retrieve_into, send_results
from medviewer.workspace import Workspace
from medviewer.workspace.export.anonymised import MAPPING
from tests.pacs.conftest import Orthanc, _free_port
from tests.pacs.workspace_helpers import (
    PHI,
    StoredStudy,
    delete_study,
    lookup,
    node,
    node_args,
    rest,
    rest_json,
    store_study,
)


@pytest.fixture(scope="module")
def study(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoredStudy]:
    stored = store_study(orthanc, tmp_path_factory.mktemp("transfer"))
    yield stored
    delete_study(orthanc, stored.study_uid)


def _approve_one(ws: Workspace) -> int:
    """A human mask on the first image, approved; the others stay unreviewed."""
    row = ws.images()[0]
    mask = np.zeros((row.rows, row.columns), np.uint8)
    mask[4:12, 2:10] = 1
    ws.revisions.save_mask(row.id, mask, source="human", author="dr.q")
    ws.revisions.set_status(row.id, "approved", author="dr.q")
    return row.id


def test_retrieve_into_imports_series_by_series(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, tmp_path: Path
) -> None:
    conn = DicomWebNode(node(orthanc, pacs_secret))
    imported: list[int] = []
    seen: list[tuple[int, int | None]] = []
    with Workspace.open(tmp_path / "ws") as ws:
        got = retrieve_into(
            ws,
            conn,
            study.study_uid,
            progress=lambda d, t: seen.append((d, t)),
            on_imported=imported.append,
        )
        assert (got.added, got.already, got.cancelled) == (6, 0, False)
        assert got.folder == ws.root / "pacs" / study.study_uid
        assert sorted(imported) == [1, 5]
        assert seen[-1] == (6, 6) and all(t == 6 for _, t in seen)
        assert {r.series_uid for r in ws.images()} == set(study.series)
        again = retrieve_into(ws, conn, study.study_uid, next(iter(study.series)))
        assert (again.added, again.already) == (0, 5)
        assert len(ws.images()) == 6


def test_cancelled_retrieve_imports_what_arrived(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, tmp_path: Path
) -> None:
    cancel = threading.Event()
    with Workspace.open(tmp_path / "ws") as ws:
        got = retrieve_into(
            ws,
            DicomWebNode(node(orthanc, pacs_secret)),
            study.study_uid,
            progress=lambda d, t: cancel.set() if d == 2 else None,
            cancel=cancel,
        )
        assert got.cancelled and (got.added, len(got.transfer.files)) == (2, 2)
        assert sorted(r.path for r in ws.images()) == sorted(str(f) for f in got.transfer.files)


@dataclass
class Retrieved:
    ws: Path
    image: int  # the approved image
    sop: str  # its SOP Instance UID


@pytest.fixture(scope="module")
def retrieved(
    orthanc: Orthanc, study: StoredStudy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Retrieved]:
    """`pacs get` into a workspace, then one image approved with a human mask."""
    mp = pytest.MonkeyPatch()
    from tests.pacs.conftest import PASSWORD, SECRET_ENV

    mp.setenv(SECRET_ENV, PASSWORD)
    mp.setenv("NO_PROXY", "127.0.0.1")
    root = tmp_path_factory.mktemp("get") / "ws"
    argv = ["pacs", "get", *node_args(orthanc, SECRET_ENV), "--study", study.study_uid]
    assert main([*argv, "--workspace", str(root)]) == 0
    with Workspace.open(root) as ws:
        image = _approve_one(ws)
        sop = ws.frame_ref(image).instance.sop_instance_uid
    yield Retrieved(root, image, sop)
    mp.undo()


def _seg_series(orthanc: Orthanc, study_uid: str) -> list[dict]:
    series = rest_json(orthanc, f"/studies/{lookup(orthanc, study_uid)}/series")
    return [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]  # type: ignore[union-attr]


def test_cli_get_then_send_approved(
    orthanc: Orthanc,
    pacs_secret: str,
    study: StoredStudy,
    retrieved: Retrieved,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Workspace.open(retrieved.ws, readonly=True) as ws:
        assert len(ws.images()) == study.instances
        assert approved_images(ws) == [retrieved.image]
    before = len(_seg_series(orthanc, study.study_uid))
    send = ["pacs", "send", *node_args(orthanc, pacs_secret), "--workspace", str(retrieved.ws)]
    assert main([*send, "--approved"]) == 0
    assert (
        capsys.readouterr()
        .out.rstrip()
        .endswith("1 of 1 image(s) sent to " + orthanc.url + " (1 file(s))")
    )
    (seg_series,) = _seg_series(orthanc, study.study_uid)[before:]
    (instance,) = seg_series["Instances"]
    seg = pydicom.dcmread(io.BytesIO(rest(orthanc, f"/instances/{instance}/file")))
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == study.study_uid
    (ref_series,) = seg.ReferencedSeriesSequence
    assert [r.ReferencedSOPInstanceUID for r in ref_series.ReferencedInstanceSequence] == [
        retrieved.sop
    ]
    tags = rest_json(orthanc, f"/instances/{instance}/simplified-tags")
    assert tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.66.4"  # type: ignore[index]


def test_send_anonymised_leaves_no_phi_on_the_pacs(
    orthanc: Orthanc,
    pacs_secret: str,
    study: StoredStudy,
    retrieved: Retrieved,
    capsys: pytest.CaptureFixture[str],
) -> None:
    send = ["pacs", "send", *node_args(orthanc, pacs_secret), "--workspace", str(retrieved.ws)]
    assert main([*send, "--image", str(retrieved.image), "--anonymise"]) == 0
    assert "(2 file(s))" in capsys.readouterr().out  # the SEG and its source's copy
    mapping = Mapping.open(retrieved.ws / MAPPING)
    anonymised_study = mapping.uid(study.study_uid)
    try:
        found = lookup(orthanc, anonymised_study)
        assert found is not None
        instances = rest_json(orthanc, f"/studies/{found}/instances")
        files = [rest(orthanc, f"/instances/{i['ID']}/file") for i in instances]  # type: ignore[union-attr]
        assert len(files) == 2
        phi = [v.encode() for v in PHI.values()] + [b"Quimby", b"Joseph", b"Riviera"]
        phi += [uid.encode() for uid in [study.study_uid, *study.series, retrieved.sop]]
        assert [w for f in files for w in phi if w in f] == []
        seg, source = sorted(
            map(pydicom.dcmread, map(io.BytesIO, files)), key=lambda d: d.Modality != "SEG"
        )
        assert (seg.Modality, source.Modality) == ("SEG", "CT")
        assert source.SOPInstanceUID == mapping.uid(retrieved.sop)
        refs = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        assert [r.ReferencedSOPInstanceUID for r in refs] == [source.SOPInstanceUID]
        assert seg.StudyInstanceUID == source.StudyInstanceUID == anonymised_study
    finally:
        delete_study(orthanc, anonymised_study)


def test_send_of_images_without_a_confirmed_mask(
    orthanc: Orthanc, pacs_secret: str, retrieved: Retrieved
) -> None:
    with Workspace.open(retrieved.ws, readonly=True) as ws:
        other = next(r.id for r in ws.images() if r.id != retrieved.image)
        sent = send_results(ws, DicomWebNode(node(orthanc, pacs_secret)), [other])
    assert sent.image_ids == [] and sent.transfer.files == []
    (failure,) = sent.failed
    assert failure.startswith(f"image {other} (") and failure.endswith("no confirmed mask to send")


def test_cli_get_ctrl_c_keeps_and_imports_what_arrived(
    orthanc: Orthanc,
    pacs_secret: str,
    study: StoredStudy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class CtrlCAfterTwo(io.StringIO):
        """stderr that presses Ctrl-C when the progress says two instances arrived."""

        def write(self, text: str) -> int:
            if text.startswith("test-orthanc: instances: 2/"):
                signal.raise_signal(signal.SIGINT)
            return super().write(text)

    before = signal.getsignal(signal.SIGINT)
    err = CtrlCAfterTwo()
    monkeypatch.setattr("sys.stderr", err)
    argv = ["pacs", "get", "test-orthanc", *node_args(orthanc, pacs_secret)]
    argv += ["--study", study.study_uid, "--series", next(iter(study.series))]
    argv += ["--workspace", str(tmp_path / "ws")]
    assert main(argv) == 1
    assert "cancelling after the instance in flight" in err.getvalue()
    assert capsys.readouterr().out.rstrip().endswith("2 new image(s), 0 already indexed")
    with Workspace.open(tmp_path / "ws", readonly=True) as ws:
        assert len(ws.images()) == 2
    assert signal.getsignal(signal.SIGINT) is before


def test_cli_find_series(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pacs", "find", *node_args(orthanc, pacs_secret), "--study", study.study_uid]
    assert main([*argv, "--series"]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = {line.split()[-1]: line for line in out[:-1]}
    assert set(study.series) <= set(listed)  # and the SEG series the send tests stored
    assert out[-1] == f"{len(listed)} series in study {study.study_uid} on {orthanc.url}"
    first, second = study.series
    assert listed[first].startswith("1  CT  transfer series 1  5 instance(s)")
    assert listed[second].startswith("2  CT  transfer series 2  1 instance(s)")
    assert main(["pacs", "find", *node_args(orthanc, pacs_secret), "--series"]) == 2
    assert "give --study UID" in capsys.readouterr().err


def _failing_nodes(orthanc: Orthanc, secret: str) -> dict[str, list[str]]:
    wrong_path = orthanc.url.replace("dicom-web", "no-such-root")
    return {
        "HTTP 404": ["--url", wrong_path, "--user", "reader", "--secret-env", secret],
        "HTTP 401": ["--url", orthanc.url],
        "connection refused": ["--url", f"http://127.0.0.1:{_free_port()}/dicom-web"],
    }


def test_get_and_send_errors_are_one_line_naming_the_node(
    orthanc: Orthanc,
    pacs_secret: str,
    study: StoredStudy,
    retrieved: Retrieved,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for reason, args in _failing_nodes(orthanc, pacs_secret).items():
        get = ["pacs", "get", "bad", *args, "--study", study.study_uid]
        send = ["pacs", "send", "bad", *args, "--approved", "--workspace", str(retrieved.ws)]
        get += ["--workspace", str(tmp_path / "ws")]
        for argv in (get, [*get, "--series", next(iter(study.series))], send):
            capsys.readouterr()
            assert main(argv) == 2, (reason, argv)
            # Progress lines ("bad: files: 0/1"), then one line: no traceback.
            err = [line for line in capsys.readouterr().err.splitlines() if line[:4] != "bad:"]
            assert len(err) == 1 and err[0].startswith("error: PACS node bad ("), err
            assert reason in err[0], err
    with Workspace.open(tmp_path / "ws", readonly=True) as ws:
        assert ws.images() == []


def test_cli_dimse_node_options(capsys: pytest.CaptureFixture[str]) -> None:
    add = ["pacs", "add-node", "pacs1", "--dimse", "ORTHANC@127.0.0.1:4242", "--calling-ae"]
    assert main([*add, "READER1", "--retrieve", "move", "--move-port", "11113"]) == 0
    assert main(["pacs", "nodes"]) == 0
    listed = capsys.readouterr().out.splitlines()[-1]
    assert listed.startswith("pacs1  ORTHANC@127.0.0.1:4242  DIMSE as READER1, retrieve by C-MOVE")
    assert "(our Storage SCP on port 11113)" in listed
    assert main(["pacs", "add-node", "pacs2", "--dimse", "X@h:1", "--retrieve", "move"]) == 2
    assert "C-MOVE needs the port our Storage SCP listens on" in capsys.readouterr().err
    assert main(["pacs", "add-node", "pacs3"]) == 2
    assert "needs a DICOMweb URL or a DIMSE AE title@host:port" in capsys.readouterr().err
