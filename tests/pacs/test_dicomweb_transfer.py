"""WADO-RS retrieve and STOW-RS store against a real Orthanc (tests/pacs/conftest.py): the
series search, files laid out by series and instance with the stored pixels, progress, cancel
keeping what arrived, per-file failures, and the node's failure reasons."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from medviewer.pacs.dicomweb import DicomWebNode, stow_outcome
from medviewer.pacs.errors import PacsError
from medviewer.pacs.remote import Cancelled, connect
from tests.imaging.helpers import write_ct_slice
from tests.pacs.conftest import CT_STUDY, Orthanc
from tests.pacs.workspace_helpers import (
    StoredStudy,
    delete_study,
    lookup,
    new_uid,
    node,
    rest_json,
    store_study,
)


@pytest.fixture(scope="module")
def study(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoredStudy]:
    stored = store_study(orthanc, tmp_path_factory.mktemp("wado"))
    yield stored
    delete_study(orthanc, stored.study_uid)


def test_connect_picks_dicomweb_for_a_url(orthanc: Orthanc, pacs_secret: str) -> None:
    assert isinstance(connect(node(orthanc, pacs_secret)), DicomWebNode)


def test_find_series(orthanc: Orthanc, pacs_secret: str, study: StoredStudy) -> None:
    conn = DicomWebNode(node(orthanc, pacs_secret))
    (ct,) = conn.find_series(CT_STUDY.study_uid)
    assert (ct.series_uid, ct.modality, ct.instances) == (CT_STUDY.study_uid + ".1", "CT", 1)
    found = {s.series_uid: s for s in conn.find_series(study.study_uid)}
    assert {uid: s.instances for uid, s in found.items()} == {
        uid: len(sops) for uid, sops in study.series.items()
    }
    assert sorted(s.description for s in found.values()) == [
        "transfer series 1",
        "transfer series 2",
    ]
    with pytest.raises(PacsError, match="'1.2.x' is not a DICOM UID"):
        conn.find_series("1.2.x")


def _pixels_by_sop(files: list[Path]) -> dict[str, np.ndarray]:
    return {str(ds.SOPInstanceUID): ds.pixel_array for ds in map(pydicom.dcmread, files)}


def test_retrieve_a_study(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, tmp_path: Path
) -> None:
    seen: list[tuple[int, int | None]] = []
    got = DicomWebNode(node(orthanc, pacs_secret)).retrieve(
        tmp_path, study.study_uid, progress=lambda d, t: seen.append((d, t))
    )
    assert got.failed == []
    assert sorted(got.files) == sorted(
        tmp_path / series / f"{sop}.dcm" for series, sops in study.series.items() for sop in sops
    )
    assert sorted(got.sop_uids) == sorted(study.pixels)
    pixels = _pixels_by_sop(got.files)
    assert all(np.array_equal(pixels[sop], study.pixels[sop]) for sop in study.pixels)
    assert seen == [(n, study.instances) for n in range(study.instances + 1)]
    assert not list(tmp_path.rglob("*.tmp"))


def test_retrieve_one_series(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, tmp_path: Path
) -> None:
    series, sops = list(study.series.items())[1]
    got = DicomWebNode(node(orthanc, pacs_secret)).retrieve(tmp_path, study.study_uid, series)
    assert got.files == [tmp_path / series / f"{sops[0]}.dcm"]
    assert [p.name for p in tmp_path.iterdir()] == [series]
    assert np.array_equal(_pixels_by_sop(got.files)[sops[0]], study.pixels[sops[0]])


def test_cancel_keeps_what_arrived(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, tmp_path: Path
) -> None:
    series, sops = next(iter(study.series.items()))
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done == 2:
            cancel.set()

    conn = DicomWebNode(node(orthanc, pacs_secret))
    with pytest.raises(Cancelled, match="2 of 5 instances had arrived"):
        conn.retrieve(tmp_path, study.study_uid, series, progress=progress, cancel=cancel)
    files = sorted((tmp_path / series).iterdir())
    assert len(files) == 2 and all(f.suffix == ".dcm" for f in files)
    pixels = _pixels_by_sop(files)
    assert all(np.array_equal(p, study.pixels[sop]) for sop, p in pixels.items())


def test_retrieve_of_what_the_node_lacks(
    orthanc: Orthanc, pacs_secret: str, study: StoredStudy, tmp_path: Path
) -> None:
    conn = DicomWebNode(node(orthanc, pacs_secret))
    with pytest.raises(PacsError, match=r"test-orthanc .*holds no instances of study 1\.2\.3\.99"):
        conn.retrieve(tmp_path, "1.2.3.99")
    with pytest.raises(PacsError, match="holds no instances of series 1.2.3.98 of study"):
        conn.retrieve(tmp_path, study.study_uid, "1.2.3.98")
    with pytest.raises(PacsError, match="Series Instance UID '../x' is not a DICOM UID"):
        conn.retrieve(tmp_path, study.study_uid, "../x")
    assert list(tmp_path.iterdir()) == []


def test_store_collects_per_file_failures(
    orthanc: Orthanc, pacs_secret: str, tmp_path: Path
) -> None:
    study_uid = new_uid()
    good = write_ct_slice(
        tmp_path / "good.dcm", np.eye(8, dtype=np.int16), series_uid=study_uid + ".1",
        study_uid=study_uid, patient_id="XFER-STOW",
    )  # fmt: skip
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:200])
    missing = tmp_path / "gone.dcm"
    seen: list[tuple[int, int | None]] = []
    try:
        got = DicomWebNode(node(orthanc, pacs_secret)).store(
            [text, good, truncated, missing], progress=lambda d, t: seen.append((d, t))
        )
        assert got.files == [good]
        assert got.sop_uids == [pydicom.dcmread(good).SOPInstanceUID]
        assert [line.split(": ")[0] for line in got.failed] == [
            str(text),
            str(truncated),
            str(missing),
        ]
        assert "not a DICOM file" in got.failed[0] and "not a DICOM file" in got.failed[1]
        assert "cannot read: No such file" in got.failed[2]
        assert seen == [(n, 4) for n in range(5)]
        stored = lookup(orthanc, got.sop_uids[0])
        tags = rest_json(orthanc, f"/instances/{stored}/simplified-tags")
        assert tags["StudyInstanceUID"] == study_uid  # type: ignore[index]
    finally:
        delete_study(orthanc, study_uid)


def test_store_cancel(orthanc: Orthanc, pacs_secret: str, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="0 of 1 files had been stored"):
        DicomWebNode(node(orthanc, pacs_secret)).store([tmp_path / "x.dcm"], cancel=cancel)


def _answer(failed: int | None = None, warning: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    answer = Dataset()
    if failed is not None:
        item.FailureReason = failed
        answer.FailedSOPSequence = [item]
    else:
        if warning is not None:
            item.WarningReason = warning
        answer.ReferencedSOPSequence = [item]
    return answer


def test_stow_outcome_reads_the_reasons() -> None:
    """What a STOW-RS response says about one instance (Orthanc stores anything we send, so
    the refusals are read from responses built here)."""
    assert stow_outcome(Dataset(), "1.2.3") == (None, None)
    assert stow_outcome(_answer(), "1.2.3") == (None, None)
    assert stow_outcome(_answer(failed=0xA700), "1.2.3") == (
        "the node refused it: out of resources (0xA700)",
        None,
    )
    assert stow_outcome(_answer(failed=0x0122), "1.2.3")[0] == (
        "the node refused it: SOP class not supported (0x0122)"
    )
    assert stow_outcome(_answer(failed=0xC123), "1.2.3")[0].endswith("cannot understand (0xC123)")
    assert stow_outcome(_answer(warning=0xB000), "1.2.3") == (
        None,
        "coercion of data elements (0xB000)",
    )
    assert stow_outcome(_answer(warning=0xB000), "9.9") == (None, None)  # another instance
