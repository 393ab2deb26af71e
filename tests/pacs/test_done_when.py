"""Issue 13's round trip against the real Orthanc (tests/pacs/conftest.py), through the CLI as a
user types it: a study stored with dcmtk's storescu is listed by `pacs find`, `pacs get` imports
it over DICOMweb and over DIMSE (C-GET and C-MOVE), an approved mask goes back with `pacs send`
(C-STORE) and Orthanc then holds a SEG of that study referencing the image (its REST API), and
a later `pacs get` of the study brings the SEG back as an `import` revision equal to the mask,
once only."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace
from tests.imaging.helpers import write_ct_slice
from tests.pacs.conftest import ORTHANC_AET, OUR_AET, Orthanc
from tests.pacs.workspace_helpers import lookup, new_uid, node_args, rest, rest_json

PATIENT = "ROUNDTRIP-13"


def _stored_with_storescu(orthanc: Orthanc, folder: Path, study_uid: str) -> list[str]:
    storescu = shutil.which("storescu")
    if storescu is None:
        pytest.skip("needs dcmtk's storescu (Debian: dcmtk)")
    series_uid, sops = new_uid(), []
    for i in range(3):
        path = write_ct_slice(
            folder / f"slice{i}.dcm",
            np.full((16, 16), 100 * i, np.int16),
            series_uid=series_uid,
            study_uid=study_uid,
            patient_id=PATIENT,
            position=(0.0, 0.0, float(i)),
            instance_number=i + 1,
        )
        sops.append(pydicom.dcmread(path).SOPInstanceUID)
    peer = ["-aet", OUR_AET, "-aec", ORTHANC_AET, "127.0.0.1", str(orthanc.dicom_port)]
    subprocess.run([storescu, *peer, *sorted(map(str, folder.glob("*.dcm")))], check=True,
                   capture_output=True, timeout=30)  # fmt: skip
    return sops


def _dimse_args(orthanc: Orthanc, *more: str) -> list[str]:
    return ["--dimse", orthanc.dimse, "--calling-ae", OUR_AET, *more]


def test_stored_found_got_sent_and_got_back(
    orthanc: Orthanc,
    orthanc_scratch: Callable[[str], None],
    pacs_secret: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    study_uid = new_uid()
    orthanc_scratch(study_uid)
    (tmp_path / "sent").mkdir()
    sops = _stored_with_storescu(orthanc, tmp_path / "sent", study_uid)
    web = node_args(orthanc, pacs_secret)

    assert main(["pacs", "find", *web, "--patient-id", PATIENT, "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert (found["study_uid"], found["instances"]) == (study_uid, 3)

    move = _dimse_args(orthanc, "--retrieve", "move", "--move-port", str(orthanc.move_port))
    for name, how in {"web": web, "get": _dimse_args(orthanc), "move": move}.items():
        ws = tmp_path / name
        assert main(["pacs", "get", *how, "--study", study_uid, "--workspace", str(ws)]) == 0
        with Workspace.open(ws, readonly=True) as opened:
            got = {opened.frame_ref(r.id).instance.sop_instance_uid for r in opened.images()}
        assert got == set(sops), name

    with Workspace.open(tmp_path / "get") as ws:
        image = next(
            r for r in ws.images() if ws.frame_ref(r.id).instance.sop_instance_uid == sops[1]
        )
        mask = np.zeros((16, 16), np.uint8)
        mask[3:9, 5:12] = 1
        ws.revisions.save_mask(image.id, mask, source="human", author="dr.round")
        ws.revisions.set_status(image.id, "approved", author="dr.round")
    send = ["pacs", "send", *_dimse_args(orthanc), "--workspace", str(tmp_path / "get")]
    assert main([*send, "--approved"]) == 0

    series = rest_json(orthanc, f"/studies/{lookup(orthanc, study_uid)}/series")
    (seg_series,) = [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]  # type: ignore[union-attr]
    (instance,) = seg_series["Instances"]
    seg = pydicom.dcmread(io.BytesIO(rest(orthanc, f"/instances/{instance}/file")))
    assert seg.StudyInstanceUID == study_uid
    (ref,) = seg.ReferencedSeriesSequence
    assert [r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence] == [sops[1]]

    back = tmp_path / "back"
    for attempt in range(2):
        capsys.readouterr()
        assert main(["pacs", "get", *web, "--study", study_uid, "--workspace", str(back)]) == 0
        out = capsys.readouterr().out
        assert ("imported before" in out) == (attempt == 1), out
    with Workspace.open(back, readonly=True) as ws:
        (image,) = [
            r for r in ws.images() if ws.frame_ref(r.id).instance.sop_instance_uid == sops[1]
        ]
        (rev,) = [r for r in ws.revisions.history(image.id) if r.kind == "mask"]
        assert rev.source == "import"
        assert np.array_equal(ws.revisions.read_mask(rev), mask)
        assert len(ws.images()) == 3  # the SEG is a mask, not an image
