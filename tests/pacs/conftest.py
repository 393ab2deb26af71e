"""A real Orthanc with its DICOMweb plugin, one per test session, on 127.0.0.1 only.

Started from a temporary configuration and storage folder on free ports, with HTTP basic
authentication (so the tests cover credentials), two small studies stored through its REST
API; stopped afterwards. Skips, saying why, where Orthanc or the plugin is missing
(`make debian-tools` installs them as root).
"""

from __future__ import annotations

import base64
import ctypes
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import MRImageStorage

from tests.imaging.helpers import write_ct_slice

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "reader", "s3cret-for-tests"
SECRET_ENV = "MEDVIEWER_TEST_PACS_SECRET"
ORTHANC_AET, OUR_AET = "ORTHANC", "MEDVIEWER"  # DIMSE: Orthanc's AE title, and the only AE it knows


@dataclass(frozen=True)
class Study:
    patient_id: str
    study_uid: str
    date: str
    modality: str


CT_STUDY = Study("PACS-CT-1", "1.2.826.0.1.3680043.8.498.101", "20240315", "CT")
MR_STUDY = Study("PACS-MR-2", "1.2.826.0.1.3680043.8.498.102", "20230101", "MR")


@dataclass(frozen=True)
class Orthanc:
    http_port: int
    dicom_port: int
    studies: tuple[Study, ...]
    move_port: int = 0  # where OUR_AET listens for a C-MOVE (Orthanc's DicomModalities)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    @property
    def dimse(self) -> str:
        return f"{ORTHANC_AET}@127.0.0.1:{self.dicom_port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(port: int, path: str, data: bytes | None = None, method: str | None = None) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    if data is not None:
        req.add_header("Content-Type", "application/dicom")
    # No proxy: nothing but 127.0.0.1 is ever contacted.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=5) as answer:
        return answer.read()


def _write_study(folder: Path, study: Study) -> Path:
    path = write_ct_slice(
        folder / f"{study.patient_id}.dcm",
        np.arange(16 * 16, dtype=np.int16).reshape(16, 16),
        series_uid=study.study_uid + ".1",
        study_uid=study.study_uid,
        patient_id=study.patient_id,
    )
    ds = pydicom.dcmread(path)
    ds.StudyDate = study.date
    ds.Modality = study.modality
    ds.StudyDescription = f"{study.modality} test study"
    if study.modality == "MR":
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.save_as(path)
    return path


def _die_with_parent() -> None:
    """Linux: Orthanc gets SIGTERM when pytest dies (killed by a timeout, its finally unrun)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    binary = shutil.which("Orthanc")
    if binary is None or not PLUGIN.exists():
        pytest.skip(
            "needs Orthanc and its DICOMweb plugin (Debian: orthanc orthanc-dicomweb; "
            "`make debian-tools` installs them as root)"
        )
    root = tmp_path_factory.mktemp("orthanc")
    server = Orthanc(_free_port(), _free_port(), (CT_STUDY, MR_STUDY), _free_port())
    config = {
        "Name": "medviewer-tests",
        "HttpPort": server.http_port,
        "DicomPort": server.dicom_port,
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "index"),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        # DIMSE: Orthanc 1.10.1 cannot be told to listen on 127.0.0.1 only (no option for it).
        # Only OUR_AET may associate (any other calling AE is rejected), called as ORTHANC;
        # a C-MOVE sends to OUR_AET at 127.0.0.1:move_port.
        "DicomAet": ORTHANC_AET,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomModalities": {"medviewer": [OUR_AET, "127.0.0.1", server.move_port]},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("wb")
    proc = subprocess.Popen(
        [binary, str(root / "orthanc.json")], stdout=log, stderr=log, preexec_fn=_die_with_parent
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _request(server.http_port, "/system")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (root / "orthanc.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"Orthanc did not start (exit {proc.poll()}):\n{tail}")
                time.sleep(0.1)
        files = root / "files"
        files.mkdir()
        for study in server.studies:
            _request(server.http_port, "/instances", _write_study(files, study).read_bytes())
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def pacs_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test server's password, where a node's --secret-env finds it."""
    monkeypatch.setenv(SECRET_ENV, PASSWORD)
    return SECRET_ENV


@pytest.fixture(autouse=True)
def _own_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nodes saved by a test go to its temp folder, never the user's settings; no proxy."""
    path = tmp_path / "pacs_nodes.json"
    monkeypatch.setenv("MEDVIEWER_PACS_NODES", str(path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return path


def orthanc_study_id(server: Orthanc, study_uid: str) -> str | None:
    """Orthanc's own id of a study, None when it does not hold it (REST /tools/lookup)."""
    found = json.loads(_request(server.http_port, "/tools/lookup", study_uid.encode()))
    return next((f["ID"] for f in found if f["Type"] == "Study"), None)


@pytest.fixture
def orthanc_scratch(orthanc: Orthanc) -> Iterator[Callable[[str], None]]:
    """Call it with the UID of a study a test adds to the shared Orthanc: deleted afterwards,
    since other tests count the studies their searches match."""
    added: list[str] = []
    yield added.append
    for uid in added:
        study_id = orthanc_study_id(orthanc, uid)
        if study_id:
            _request(orthanc.http_port, f"/studies/{study_id}", method="DELETE")


@dataclass(frozen=True)
class Slices:
    study_uid: str
    series_uid: str
    pixels: dict[str, np.ndarray]  # by SOP Instance UID


@pytest.fixture
def orthanc_slices(
    orthanc: Orthanc, orthanc_scratch: Callable[[str], None], tmp_path: Path
) -> Slices:
    """A five-slice CT series stored in Orthanc through its REST API for one test."""
    study_uid = "1.2.826.0.1.3680043.8.498.103"
    orthanc_scratch(study_uid)
    folder = tmp_path / "orthanc_slices"
    folder.mkdir()
    pixels = {}
    for k in range(5):
        array = (np.arange(16 * 16, dtype=np.int16).reshape(16, 16) + 100 * k).astype(np.int16)
        path = write_ct_slice(
            folder / f"slice{k}.dcm",
            array,
            series_uid=study_uid + ".1",
            study_uid=study_uid,
            patient_id="DIMSE-SLICES-3",
            position=(0.0, 0.0, float(k)),
            instance_number=k + 1,
        )
        pixels[str(pydicom.dcmread(path).SOPInstanceUID)] = array
        _request(orthanc.http_port, "/instances", path.read_bytes())
    return Slices(study_uid, study_uid + ".1", pixels)
