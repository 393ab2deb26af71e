"""Helpers for the retrieve/send tests against the session's Orthanc (tests/pacs/conftest.py):
a two-series study stored through Orthanc's REST API (and deleted afterwards), and reading back
what Orthanc holds."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from medviewer.pacs.nodes import PacsNode
from tests.imaging.helpers import write_ct_slice
from tests.pacs.conftest import PASSWORD, USER, Orthanc

# Identifying values the anonymised send must not let reach the PACS.
PHI = {
    "PatientName": "Quimby^Joseph",
    "PatientID": "XFER-93817",
    "PatientBirthDate": "19580311",
    "InstitutionName": "Springfield Mayor's Clinic",
    "ReferringPhysicianName": "Nick^Riviera",
    "PerformingPhysicianName": "Hibbert^Julius",
}


def new_uid() -> str:
    """A UID short enough for a test helper to extend it (`write_ct_slice` adds '.9')."""
    return f"1.2.826.0.1.3680043.8.498.{uuid.uuid4().int % 10**20}"


@dataclass
class StoredStudy:
    study_uid: str
    series: dict[str, list[str]] = field(default_factory=dict)  # series UID -> SOP UIDs
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # SOP UID -> pixels

    @property
    def instances(self) -> int:
        return sum(len(s) for s in self.series.values())


def rest(
    orthanc: Orthanc, path: str, data: bytes | None = None, method: str | None = None
) -> bytes:
    req = urllib.request.Request(f"http://127.0.0.1:{orthanc.http_port}{path}", data, method=method)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only
    with opener.open(req, timeout=5) as answer:
        return answer.read()


def rest_json(orthanc: Orthanc, path: str, data: bytes | None = None) -> object:
    return json.loads(rest(orthanc, path, data))


def lookup(orthanc: Orthanc, uid: str) -> str | None:
    """Orthanc's id of the resource with this DICOM UID."""
    found = rest_json(orthanc, "/tools/lookup", uid.encode())
    return found[0]["ID"] if found else None  # type: ignore[index]


def store_study(orthanc: Orthanc, folder: Path, sizes: tuple[int, ...] = (5, 1)) -> StoredStudy:
    """One identified patient's study, a series of `sizes[i]` slices each, through REST."""
    study = StoredStudy(new_uid())
    folder.mkdir(parents=True, exist_ok=True)
    for s, size in enumerate(sizes):
        series_uid = new_uid()
        study.series[series_uid] = []
        for i in range(size):
            pixels = np.arange(16 * 16, dtype=np.int16).reshape(16, 16) + 1000 * s + 7 * i
            path = write_ct_slice(
                folder / f"s{s}_{i}.dcm",
                pixels,
                series_uid=series_uid,
                study_uid=study.study_uid,
                patient_id=PHI["PatientID"],
                position=(0.0, 0.0, float(i)),
                instance_number=i + 1,
            )
            ds = pydicom.dcmread(path)
            for keyword, value in PHI.items():
                setattr(ds, keyword, value)
            ds.SeriesNumber = s + 1
            ds.SeriesDescription = f"transfer series {s + 1}"
            ds.save_as(path)
            rest(orthanc, "/instances", path.read_bytes())
            study.series[series_uid].append(ds.SOPInstanceUID)
            study.pixels[ds.SOPInstanceUID] = pixels
    return study


def delete_study(orthanc: Orthanc, study_uid: str) -> None:
    found = lookup(orthanc, study_uid)
    if found:
        rest(orthanc, f"/studies/{found}", method="DELETE")


def node(orthanc: Orthanc, secret_env: str, **kwargs: object) -> PacsNode:
    fields: dict = {"url": orthanc.url, "auth": "basic", "user": USER, "secret_env": secret_env}
    return PacsNode("test-orthanc", **(fields | kwargs))


def node_args(orthanc: Orthanc, secret_env: str) -> list[str]:
    """The CLI's inline node for the test server."""
    return ["--url", orthanc.url, "--user", USER, "--secret-env", secret_env]
