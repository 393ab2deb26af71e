"""DIMSE against a real Orthanc (tests/pacs/conftest.py) and dcmtk: C-ECHO, C-FIND, C-GET,
C-MOVE to our Storage SCP, C-STORE, cancel, and each way an exchange fails becoming one
PacsError that names the node."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.pacs.dimse import DimseNode
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import PacsNode
from medviewer.pacs.query import StudyQuery, date_range
from medviewer.pacs.remote import Cancelled, connect
from tests.imaging.helpers import write_ct_slice
from tests.pacs.conftest import (
    CT_STUDY,
    MR_STUDY,
    ORTHANC_AET,
    OUR_AET,
    Orthanc,
    Slices,
    _die_with_parent,
    _free_port,
    _request,
    orthanc_study_id,
)

PIXELS = np.arange(16 * 16, dtype=np.int16).reshape(16, 16)  # what the fixture stored


def _node(orthanc: Orthanc, **kwargs: object) -> PacsNode:
    fields: dict = {"dimse": orthanc.dimse, "timeout": 10.0, "move_port": orthanc.move_port}
    return PacsNode("test-dimse", **(fields | kwargs))


def _uids(orthanc: Orthanc, **query: str) -> set[str]:
    return {s.study_uid for s in connect(_node(orthanc)).find_studies(StudyQuery(**query))}


def _slice(folder: Path, study_uid: str, patient_id: str, **kwargs: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_ct_slice(
        folder / f"{patient_id}.dcm",
        PIXELS,
        series_uid=study_uid + ".1",
        study_uid=study_uid,
        patient_id=patient_id,
        **kwargs,  # type: ignore[arg-type]
    )


def test_connect_gives_dimse_and_echo_answers(orthanc: Orthanc) -> None:
    conn = connect(_node(orthanc))
    assert isinstance(conn, DimseNode)
    assert conn.echo() > 0


def test_find_studies_by_patient_modality_and_dates(orthanc: Orthanc) -> None:
    (study,) = connect(_node(orthanc)).find_studies(StudyQuery(patient_id=CT_STUDY.patient_id))
    assert study.study_uid == CT_STUDY.study_uid
    assert (study.patient_name, study.study_date, study.modalities) == (
        "Test^Patient",
        "20240315",
        ("CT",),
    )
    assert (study.description, study.series, study.instances) == ("CT test study", 1, 1)
    both = {CT_STUDY.study_uid, MR_STUDY.study_uid}
    assert _uids(orthanc, patient_id="PACS-*") == both
    assert _uids(orthanc, patient_id="PACS-C?-1") == {CT_STUDY.study_uid}
    assert _uids(orthanc, patient_id="Nobody*") == set()
    assert _uids(orthanc, patient_id="PACS-*", modality="MR") == {MR_STUDY.study_uid}
    assert _uids(orthanc, dates=date_range("20240301-20240331")) == {CT_STUDY.study_uid}
    assert _uids(orthanc, patient_id="PACS-*", dates=date_range("20220101-")) == both
    assert _uids(orthanc, patient_id="PACS-*", dates=date_range("-20221231")) == set()
    assert _uids(orthanc, study_uid=MR_STUDY.study_uid) == {MR_STUDY.study_uid}
    limited = connect(_node(orthanc)).find_studies(StudyQuery(patient_id="PACS-*"), limit=1)
    assert len(limited) == 1 and limited[0].study_uid in both


def test_find_series(orthanc: Orthanc) -> None:
    (series,) = connect(_node(orthanc)).find_series(CT_STUDY.study_uid)
    assert (series.study_uid, series.series_uid) == (CT_STUDY.study_uid, CT_STUDY.study_uid + ".1")
    assert (series.modality, series.instances) == ("CT", 1)
    assert connect(_node(orthanc)).find_series("1.2.3.999") == []


@pytest.mark.parametrize("how", ["get", "move"])
def test_retrieve_study_writes_each_instance_by_series(
    orthanc: Orthanc, tmp_path: Path, how: str
) -> None:
    seen: list[tuple[int, int | None]] = []
    conn = connect(_node(orthanc, retrieve_with=how))
    got = conn.retrieve(tmp_path, CT_STUDY.study_uid, progress=lambda d, t: seen.append((d, t)))
    (path,) = got.files
    ds = pydicom.dcmread(path)
    assert path == tmp_path / (CT_STUDY.study_uid + ".1") / f"{ds.SOPInstanceUID}.dcm"
    assert np.array_equal(ds.pixel_array, PIXELS)
    assert got.failed == [] and [d for d, _ in seen] == [1]
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("how", ["get", "move"])
def test_retrieve_one_series_counts_progress(
    orthanc: Orthanc, orthanc_slices: Slices, tmp_path: Path, how: str
) -> None:
    seen: list[tuple[int, int | None]] = []
    conn = connect(_node(orthanc, retrieve_with=how))
    got = conn.retrieve(
        tmp_path,
        orthanc_slices.study_uid,
        orthanc_slices.series_uid,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert sorted(p.stem for p in got.files) == sorted(orthanc_slices.pixels)
    for path in got.files:
        assert np.array_equal(pydicom.dcmread(path).pixel_array, orthanc_slices.pixels[path.stem])
    assert [d for d, _ in seen] == [1, 2, 3, 4, 5]
    # The total comes from the pending responses' sub-operation counts, once the first came.
    assert seen[-1] == (5, 5)


@pytest.mark.parametrize("how", ["get", "move"])
def test_cancel_keeps_what_arrived(
    orthanc: Orthanc, orthanc_slices: Slices, tmp_path: Path, how: str
) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done == 2:
            cancel.set()

    conn = connect(_node(orthanc, retrieve_with=how))
    folder = tmp_path / "retrieved"
    with pytest.raises(Cancelled, match="2 instance"):
        conn.retrieve(folder, orthanc_slices.study_uid, progress=progress, cancel=cancel)
    kept = sorted(folder.rglob("*.dcm"))
    assert len(kept) == 2
    for path in kept:
        assert np.array_equal(pydicom.dcmread(path).pixel_array, orthanc_slices.pixels[path.stem])
    assert not list(folder.rglob("*.tmp"))
    # The association was released: the node still answers.
    assert conn.echo() > 0


def test_a_uid_that_is_a_path_is_not_written(
    orthanc: Orthanc, orthanc_scratch: Callable[[str], None], tmp_path: Path
) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.108"
    orthanc_scratch(study_uid)
    path = _slice(tmp_path / "evil", study_uid, "DIMSE-EVIL-8")
    ds = pydicom.dcmread(path)
    with warnings.catch_warnings():  # pydicom warns of the invalid UI value: the point here
        warnings.simplefilter("ignore")
        ds.SeriesInstanceUID = "../../evil"
        ds.save_as(path)
    _request(orthanc.http_port, "/instances", path.read_bytes())  # Orthanc takes it as it is
    folder = tmp_path / "retrieved"
    # Every sub-operation failed (we refused the one), so the node's C-GET status is a failure.
    with pytest.raises(PacsError, match=r"C-GET failed, status 0xA702 .*'\.\./\.\./evil' is not a"):
        connect(_node(orthanc)).retrieve(folder, study_uid)
    assert not folder.exists() or list(folder.rglob("*")) == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["DIMSE-EVIL-8.dcm", "evil"]


def test_pynetdicom_logs_only_warnings_unless_debugging(
    orthanc: Orthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDVIEWER_DEBUG", "1")
    connect(_node(orthanc))
    assert logging.getLogger("pynetdicom").level == logging.DEBUG
    monkeypatch.delenv("MEDVIEWER_DEBUG")
    connect(_node(orthanc))
    assert logging.getLogger("pynetdicom").level == logging.WARNING


def test_move_when_our_port_is_taken(orthanc: Orthanc, tmp_path: Path) -> None:
    with socket.socket() as taken:
        # Earlier moves' connections may linger in TIME_WAIT on the port: not "taken".
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", orthanc.move_port))
        taken.listen()
        conn = connect(_node(orthanc, retrieve_with="move"))
        with pytest.raises(PacsError, match=f"cannot listen on port {orthanc.move_port}"):
            conn.retrieve(tmp_path, CT_STUDY.study_uid)
    assert list(tmp_path.iterdir()) == []


def test_store_sends_files_and_reports_each_bad_one(
    orthanc: Orthanc, orthanc_scratch: Callable[[str], None], tmp_path: Path
) -> None:
    study_uid = "1.2.826.0.1.3680043.8.498.104"
    orthanc_scratch(study_uid)
    good = _slice(tmp_path / "good", study_uid, "DIMSE-STORE-4")
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:200])
    # Orthanc accepts no presentation context for an unknown SOP class.
    odd = _slice(tmp_path / "odd", study_uid, "DIMSE-STORE-ODD")
    ds = pydicom.dcmread(odd)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.826.0.1.3680043.8.498.999"
    ds.save_as(odd)
    # Orthanc answers a failure status (0xA700) for an instance without study and series UIDs.
    no_uids = _slice(tmp_path / "no_uids", study_uid, "DIMSE-STORE-NO-UIDS")
    ds = pydicom.dcmread(no_uids)
    del ds.StudyInstanceUID, ds.SeriesInstanceUID
    ds.save_as(no_uids)
    seen: list[tuple[int, int | None]] = []
    sent = connect(_node(orthanc)).store(
        [not_dicom, good, truncated, odd, no_uids], progress=lambda d, t: seen.append((d, t))
    )
    assert sent.files == [good]
    assert sent.sop_uids == [str(pydicom.dcmread(good).SOPInstanceUID)]
    assert [line.split(":")[0] for line in sent.failed] == [
        str(not_dicom),
        str(truncated),
        str(odd),
        str(no_uids),
    ]
    assert "not a DICOM instance" in sent.failed[0]
    assert "1.2.826.0.1.3680043.8.498.999" in sent.failed[2]
    assert "refused by the node, status 0xA700" in sent.failed[3]
    assert seen[-1] == (5, 5)
    found = _request(orthanc.http_port, "/tools/lookup", sent.sop_uids[0].encode())
    assert b'"Type" : "Instance"' in found or b'"Type":"Instance"' in found


def test_store_of_nothing_readable_needs_no_network(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 50)
    node = PacsNode("nowhere", dimse=f"{ORTHANC_AET}@127.0.0.1:{_free_port()}")
    sent = connect(node).store([junk])
    assert sent.files == [] and len(sent.failed) == 1 and str(junk) in sent.failed[0]


def test_refused_port_names_node_and_reason() -> None:
    address = f"{ORTHANC_AET}@127.0.0.1:{_free_port()}"
    with pytest.raises(PacsError, match="connection refused") as e:
        connect(PacsNode("closed", dimse=address, timeout=5)).echo()
    assert f"PACS node closed ({address})" in str(e.value)


def test_wrong_called_ae_title_is_rejected(orthanc: Orthanc) -> None:
    node = _node(orthanc, dimse=f"NOT-ORTHANC@127.0.0.1:{orthanc.dicom_port}")
    with pytest.raises(PacsError, match="rejected: called AE title not recognised"):
        connect(node).echo()


def test_unknown_calling_ae_title_is_rejected(orthanc: Orthanc) -> None:
    with pytest.raises(PacsError, match="rejected: calling AE title not recognised"):
        connect(_node(orthanc, calling_ae="STRANGER")).find_studies(StudyQuery())


def test_silent_server_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        node = PacsNode("silent", dimse=f"ANY@127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(PacsError, match=r"no answer .* within 0\.3 s \(timeout\)"):
            connect(node).echo()


# --- dcmtk -------------------------------------------------------------------------------


def _dcmtk(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"needs dcmtk's {name} (Debian: dcmtk)")
    return binary


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """dcmtk's storescp on a free port (it cannot be bound to 127.0.0.1 alone): (address, out)."""
    binary = _dcmtk("storescp")
    out = tmp_path / "storescp"
    out.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "-aet", "STORESCP", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,
    )
    try:
        node = PacsNode("storescp", dimse=f"STORESCP@127.0.0.1:{port}", timeout=5)
        for _ in range(100):  # until it listens
            try:
                connect(node).echo()
                break
            except PacsError:
                if proc.poll() is not None:
                    pytest.fail(f"storescp exited with {proc.returncode}")
                threading.Event().wait(0.05)
        yield node.dimse or "", out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_store_lands_in_dcmtk_storescp(storescp: tuple[str, Path], tmp_path: Path) -> None:
    address, out = storescp
    path = _slice(tmp_path / "send", "1.2.826.0.1.3680043.8.498.105", "DIMSE-STORESCP")
    sent = connect(PacsNode("storescp", dimse=address, timeout=5)).store([path])
    assert sent.failed == [] and sent.files == [path]
    (landed,) = out.iterdir()
    ds = pydicom.dcmread(landed)
    assert ds.SOPInstanceUID == sent.sop_uids[0]
    assert np.array_equal(ds.pixel_array, PIXELS)


def test_dcmtk_storescu_study_is_found_and_findscu_agrees(
    orthanc: Orthanc, orthanc_scratch: Callable[[str], None], tmp_path: Path
) -> None:
    storescu, findscu = _dcmtk("storescu"), _dcmtk("findscu")
    study_uid = "1.2.826.0.1.3680043.8.498.106"
    orthanc_scratch(study_uid)
    path = _slice(tmp_path / "dcmtk", study_uid, "DCMTK-STORED-6")
    peer = ["-aet", OUR_AET, "-aec", ORTHANC_AET, "127.0.0.1", str(orthanc.dicom_port)]
    subprocess.run([storescu, *peer, str(path)], check=True, capture_output=True, timeout=30)
    assert orthanc_study_id(orthanc, study_uid) is not None

    ours = connect(_node(orthanc)).find_studies(StudyQuery(patient_id="DCMTK-*"))
    assert [s.study_uid for s in ours] == [study_uid]

    answers = tmp_path / "findscu"
    answers.mkdir()
    keys = ["QueryRetrieveLevel=STUDY", "PatientID=*", "StudyInstanceUID", "ModalitiesInStudy"]
    keys += ["StudyDate", "NumberOfStudyRelatedInstances"]
    command = [findscu, "-S", "-X", "-od", str(answers), *peer[:4]]
    command += [a for k in keys for a in ("-k", k)] + peer[4:]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    theirs = {}
    for rsp in answers.glob("rsp*.dcm"):
        ds = pydicom.dcmread(rsp)
        theirs[ds.StudyInstanceUID] = (ds.StudyDate, ds.NumberOfStudyRelatedInstances)
    mine = {
        s.study_uid: (s.study_date, s.instances)
        for s in connect(_node(orthanc)).find_studies(StudyQuery(patient_id="*"))
    }
    assert study_uid in theirs and theirs == mine
