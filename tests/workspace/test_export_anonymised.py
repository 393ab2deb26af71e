"""`export --anonymise`: a PHI scan over every written file, the SEG still references its
de-identified source copies (highdicom) and passes dciodvfy, the mapping is reused, and an
unwritable mapping stops the export before anything is written."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medviewer.cli import main
from medviewer.deid.errors import DeidentificationError
from medviewer.deid.mapping import Mapping
from medviewer.deid.profile import Anonymiser
from medviewer.workspace import Workspace
from medviewer.workspace.export import ExportReport, export_workspace
from tests.workspace.test_export_dicom_seg import dciodvfy

PATIENT = {"PatientName": "Smithers^Waylon", "PatientID": "PID-918273",
           "PatientBirthDate": "19610417", "InstitutionName": "Springfield General",
           "ReferringPhysicianName": "Hibbert^Julius", "PerformingPhysicianName": "Riviera^Nick",
           "AccessionNumber": "ACC5551234", "StudyDescription": "Smithers chest"}  # fmt: skip


@dataclass
class Study:
    ws: Workspace
    tmp: Path
    uids: set[str]  # every instance UID of the sources


def _write_series(root: Path) -> set[str]:
    """Three CT slices of one identified patient, with a private tag."""
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    uids = {study, series, frame_of_reference}
    root.mkdir(parents=True)
    for i in range(3):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        for keyword, value in PATIENT.items():
            setattr(ds, keyword, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_reference
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-158.0, -179.0, -75.0 + 5 * i]
        ds.InstanceNumber, ds.SeriesDescription = i + 1, "Smithers thorax"
        ds.add_new(0x00090010, "LO", "ACME")
        ds.add_new(0x00091001, "LO", "Waylon private note")
        ds.save_as(root / f"s{i}.dcm")
        uids.add(ds.SOPInstanceUID)
    return uids


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    tmp = tmp_path_factory.mktemp("anon")
    uids = _write_series(tmp / "data" / "Smithers_Waylon")
    with Workspace.open(tmp / "ws") as ws:
        ws.import_paths([tmp / "data"])
        for row in ws.images():
            mask = np.zeros((row.rows, row.columns), np.uint8)
            mask[10:40, 20:60] = 1
            ws.revisions.save_mask(row.id, mask, source="human", author="alice")
        yield Study(ws, tmp, uids)


def _export(study: Study, out: str, fmt: str = "dicom-seg") -> tuple[ExportReport, Mapping]:
    mapping = Mapping.open(study.tmp / "site" / "mapping.json")
    report = export_workspace(study.ws, study.tmp / out, fmt, anonymiser=Anonymiser(mapping))
    return report, mapping


@pytest.fixture(scope="module")
def seg_export(study: Study) -> tuple[ExportReport, Mapping]:
    return _export(study, "seg")


def _phi(study: Study) -> list[str]:
    words = [v for k, v in PATIENT.items() if k != "StudyDescription"] + ["Smithers", "Waylon"]
    words += ["20040119", "1CT1"]  # CT_small's study date and original patient ID
    return words + sorted(study.uids)


def _scan(folder: Path, phi: list[str]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes() + str(path.relative_to(folder)).encode()
            found += [f"{path.name}: {w}" for w in phi if w.encode() in data]
    return found


def test_phi_scan_of_every_written_file(study: Study, seg_export) -> None:
    report, _ = seg_export
    files = list((study.tmp / "seg").rglob("*.dcm"))
    assert len(files) == 4  # one SEG and its three source copies
    assert _scan(study.tmp / "seg", _phi(study)) == []
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert "113100" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
        assert not any(elem.tag.is_private for elem in ds.iterall())
        assert ds.PatientBirthDate == ""


def test_seg_references_its_anonymised_sources(study: Study, seg_export) -> None:
    report, mapping = seg_export
    seg_path = next(f for f in report.files if f.name.endswith(".seg.dcm"))
    copies = [pydicom.dcmread(f) for f in report.files if f.parent.parent.name == "sources"]
    seg = hd.seg.segread(seg_path)
    assert {uid for _, _, uid in seg.get_source_image_uids()} == {
        str(c.SOPInstanceUID) for c in copies
    }
    source = copies[0]
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.PatientID == source.PatientID == seg.PatientName == source.PatientName
    # The copies' pixels are the originals', and the masks read back against the copies.
    maps = seg.get_pixels_by_source_instance(
        [str(c.SOPInstanceUID) for c in copies], combine_segments=True
    )
    assert all(m[10:40, 20:60].all() and m.sum() == 30 * 40 for m in maps)
    entry = next(iter(mapping.patients.values()))
    assert source.PatientID == entry.pseudonym
    shifted = pydicom.valuerep.DA("20040119") + __import__("datetime").timedelta(
        days=entry.date_offset_days
    )
    assert source.StudyDate == seg.StudyDate == shifted.strftime("%Y%m%d")


def test_anonymised_seg_passes_dciodvfy(seg_export) -> None:
    report, _ = seg_export
    for path in report.files:
        result = dciodvfy(path)
        if path.name.endswith(".seg.dcm"):
            assert result.returncode == 0, f"{path.name}:\n{result.stderr}"
            assert "Error" not in result.stderr, result.stderr


def test_later_export_reuses_the_mapping(study: Study, seg_export) -> None:
    first, mapping = seg_export
    saved = json.loads(mapping.path.read_text())
    assert saved["patients"]["PID-918273"]["pseudonym"].startswith("ANON-")
    assert mapping.path.stat().st_mode & 0o077 == 0  # owner only: it re-identifies
    again, _ = _export(study, "seg-again")
    names = lambda r: sorted(f.relative_to(r.out_dir) for f in r.files)  # noqa: E731
    assert names(again) == names(first)  # same UIDs, so the same file names
    for a, b in zip(sorted(first.files), sorted(again.files)):
        da, db = pydicom.dcmread(a), pydicom.dcmread(b)
        assert (da.PatientID, da.StudyDate, da.StudyInstanceUID) == (
            db.PatientID, db.StudyDate, db.StudyInstanceUID,
        )  # fmt: skip
        if a.parent.parent.name == "sources":  # a SEG is a new object each time
            assert da.SOPInstanceUID == db.SOPInstanceUID


def test_csv_and_png_carry_pseudonyms_only(study: Study, seg_export) -> None:
    _, mapping = seg_export
    report, _ = _export(study, "csv", "csv")
    rows = list(csv.DictReader(report.files[0].open(encoding="utf-8")))
    pseudonym = mapping.patients["PID-918273"].pseudonym
    assert {r["patient_id"] for r in rows} == {pseudonym}
    assert {r["path"] for r in rows} == {""}
    _export(study, "png", "png")
    for out in ("csv", "png"):
        assert _scan(study.tmp / out, _phi(study)) == [], out


def test_unwritable_mapping_is_one_line_and_writes_nothing(study: Study, capsys) -> None:
    blocker = study.tmp / "not-a-folder"  # a file where the mapping's folder should be:
    blocker.write_text("x")  # unwritable for root as well
    code = main(["export", "--workspace", str(study.ws.root), "--format", "dicom-seg",
                 "--out", str(study.tmp / "never"), "--anonymise",
                 "--mapping", str(blocker / "mapping.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot write" in err, err
    assert not (study.tmp / "never").exists()
    assert blocker.read_text() == "x"


def test_mapping_inside_the_export_folder_is_refused(study: Study) -> None:
    mapping = Mapping.open(study.tmp / "inside" / "mapping.json")
    with pytest.raises(DeidentificationError, match="inside the export folder"):
        export_workspace(study.ws, study.tmp / "inside", "csv", anonymiser=Anonymiser(mapping))
    assert not (study.tmp / "inside").exists()


def test_cli_export_anonymise_default_mapping_in_workspace(study: Study, capsys) -> None:
    out = study.tmp / "cli"
    args = ["export", "--workspace", str(study.ws.root), "--format", "dicom-seg"]
    assert main([*args, "--out", str(out), "--anonymise"]) == 0
    assert "De-identified" in capsys.readouterr().out
    assert (study.ws.root / "deidentification" / "mapping.json").exists()
    assert _scan(out, _phi(study)) == []
    shutil.rmtree(out)
