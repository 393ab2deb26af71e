"""QIDO-RS against a real Orthanc (tests/pacs/conftest.py): echo, study search, and each way a
connection fails becoming one PacsError that names the node."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from medviewer.cli import main
from medviewer.pacs.dicomweb import DicomWebNode
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import PacsNode
from medviewer.pacs.query import StudyQuery, date_range
from tests.pacs.conftest import CT_STUDY, MR_STUDY, USER, Orthanc, _free_port


def _node(orthanc: Orthanc, secret_env: str, **kwargs: object) -> PacsNode:
    fields: dict = {"url": orthanc.url, "auth": "basic", "user": USER, "secret_env": secret_env}
    return PacsNode("test-orthanc", **(fields | kwargs))


def _uids(orthanc: Orthanc, secret: str, **query: str) -> set[str]:
    found = DicomWebNode(_node(orthanc, secret)).find_studies(StudyQuery(**query))
    return {s.study_uid for s in found}


def test_echo(orthanc: Orthanc, pacs_secret: str) -> None:
    assert DicomWebNode(_node(orthanc, pacs_secret)).echo() < 10


def test_find_by_patient_modality_and_dates(orthanc: Orthanc, pacs_secret: str) -> None:
    (study,) = DicomWebNode(_node(orthanc, pacs_secret)).find_studies(
        StudyQuery(patient_id=CT_STUDY.patient_id)
    )
    assert study.study_uid == CT_STUDY.study_uid
    assert (study.study_date, study.modalities) == ("20240315", ("CT",))
    assert (study.patient_name, study.series, study.instances) == ("Test^Patient", 1, 1)
    assert _uids(orthanc, pacs_secret, modality="MR") == {MR_STUDY.study_uid}
    both = {CT_STUDY.study_uid, MR_STUDY.study_uid}
    assert _uids(orthanc, pacs_secret, dates=date_range("20240301-20240331")) == {
        CT_STUDY.study_uid
    }
    assert _uids(orthanc, pacs_secret, dates=date_range("20220101-")) == both
    assert _uids(orthanc, pacs_secret, dates=date_range("-20221231")) == set()


def test_find_with_wildcards(orthanc: Orthanc, pacs_secret: str) -> None:
    """* and ? are sent as they are: Orthanc matched nothing for PACS-%2A (nor for ^ as %5E)."""
    both = {CT_STUDY.study_uid, MR_STUDY.study_uid}
    assert CT_STUDY.study_uid in _uids(orthanc, pacs_secret, patient_name="Test*")
    assert _uids(orthanc, pacs_secret, patient_name="Nobody*") == set()
    assert CT_STUDY.study_uid in _uids(orthanc, pacs_secret, patient_name="Test^Patient")
    assert _uids(orthanc, pacs_secret, patient_name="Test^Nobody") == set()
    assert _uids(orthanc, pacs_secret, patient_id="PACS-*") == both
    assert _uids(orthanc, pacs_secret, patient_id="PACS-C?-1") == {CT_STUDY.study_uid}


def test_cli_echo_and_find_with_a_saved_node(
    orthanc: Orthanc, pacs_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "pacs",
        "add-node",
        "local",
        "--url",
        orthanc.url,
        "--auth",
        "basic",
        "--user",
        USER,
        "--secret-env",
        pacs_secret,
    ]
    assert main(argv) == 0
    assert main(["pacs", "echo", "local"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("local: ok (")
    find = ["pacs", "find", "local", "--modality", "CT", "--date", "20240101-20241231"]
    assert main([*find, "--json"]) == 0
    (study,) = json.loads(capsys.readouterr().out)
    assert study["patient_id"] == CT_STUDY.patient_id
    assert main(find) == 0
    out = capsys.readouterr().out
    assert CT_STUDY.study_uid in out and out.rstrip().endswith("1 study on local")


def test_cli_inline_url(
    orthanc: Orthanc, pacs_secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "pacs",
        "find",
        "--url",
        orthanc.url,
        "--user",
        USER,
        "--secret-env",
        pacs_secret,
        "--patient-id",
        MR_STUDY.patient_id,
        "--json",
    ]
    assert main(argv) == 0
    assert [s["study_uid"] for s in json.loads(capsys.readouterr().out)] == [MR_STUDY.study_uid]


def test_wrong_port_is_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}/dicom-web"
    assert main(["pacs", "add-node", "nowhere", "--url", url]) == 0
    capsys.readouterr()
    assert main(["pacs", "echo", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: PACS node nowhere ({url}): connection refused")


def test_bad_credentials_are_401(
    orthanc: Orthanc, pacs_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WRONG_PACS_PW", "not-the-password")
    with pytest.raises(PacsError, match=r"PACS node test-orthanc \(.*\): HTTP 401"):
        DicomWebNode(_node(orthanc, "WRONG_PACS_PW")).echo()
    with pytest.raises(PacsError, match="HTTP 401"):
        DicomWebNode(_node(orthanc, pacs_secret, auth="none")).echo()


def test_wrong_path_is_404(orthanc: Orthanc, pacs_secret: str) -> None:
    node = _node(orthanc, pacs_secret, url=orthanc.url.replace("dicom-web", "no-such-root"))
    with pytest.raises(PacsError, match="HTTP 404 .*check the URL's path"):
        DicomWebNode(node).echo()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_no_answer_is_a_timeout(silent_port: int) -> None:
    node = PacsNode("silent", url=f"http://127.0.0.1:{silent_port}/dicom-web", timeout=0.5)
    with pytest.raises(PacsError, match=r"PACS node silent .*no answer within 0.5 s \(timeout\)"):
        DicomWebNode(node).echo()
