"""Header fast path: read_plain and the pydicom reader give describe() the same answer."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ImplicitVRLittleEndian

from medviewer.imaging import Instance, dicom, load_volume, scan
from medviewer.imaging.errors import UnreadableFile
from medviewer.imaging.header import read_plain
from tests.conftest import sample_file
from tests.imaging.helpers import write_ct_slice

# Files the fast reader must leave to pydicom, and why.
UNUSUAL = {
    "MR_small_bigendian.dcm": "big endian",
    "no_meta.dcm": "no preamble or file meta",
    "DICOMDIR": "directory records",
    "UN_sequence.dcm": "UN of undefined length (implicit VR items)",
    "SC_rgb_jpeg.dcm": "implicit VR dataset under an explicit VR transfer syntax",
    "badVR.dcm": "Number of Frames '1A'",
}


def _outcome(path: Path) -> Instance | tuple[str, str]:
    """What describe() answers: the Instance, or the error and the reason a user reads."""
    try:
        return dicom.describe(path)
    except UnreadableFile as e:
        return type(e).__name__, e.reason


def _assert_same_as_pydicom(files: list[Path], monkeypatch: pytest.MonkeyPatch) -> int:
    """Every file the fast reader takes gets pydicom's answer; returns how many are Instances."""
    taken = [f for f in files if read_plain(f) is not None]
    fast = {f: _outcome(f) for f in taken}
    with monkeypatch.context() as m:
        m.setattr(dicom, "read_plain", lambda path: None)  # describe() without the fast path
        slow = {f: _outcome(f) for f in taken}
    assert {f.name: v for f, v in fast.items() if v != slow[f]} == {}
    return sum(isinstance(v, Instance) for v in fast.values())


def _all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_pydicom_test_files_same_answer_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    assert _assert_same_as_pydicom(_all_files(folder), monkeypatch) >= 30


def test_pydicom_data_files_same_answer_either_way(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(sample_file("693_UNCI.dcm")).parent  # skips without pydicom-data
    assert _assert_same_as_pydicom(_all_files(folder), monkeypatch) >= 30


@pytest.mark.parametrize("name", UNUSUAL)
def test_unusual_files_left_to_pydicom(name: str) -> None:
    assert read_plain(sample_file(name)) is None


def test_generated_ct_series_takes_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CT series as scanners write it, in shuffled file order, like the series_load benchmark.
    rng = np.random.default_rng(0)
    volume = rng.integers(-1024, 3000, (6, 64, 48), dtype=np.int16)
    names = list(range(len(volume)))
    random.Random(0).shuffle(names)
    files = [
        write_ct_slice(
            tmp_path / f"IM{names[k]:04d}.dcm",
            volume[k],
            series_uid="1.2.826.0.1.3680043.2.1125.7",
            position=(-120.0, -95.5, 2.5 * k),
            instance_number=k + 1,
        )
        for k in range(len(volume))
    ]
    assert _assert_same_as_pydicom(files, monkeypatch) == len(files)
    (series,) = scan([tmp_path]).series()
    first = series.instances[0]
    assert first.raw_dtype == "<i2" and first.pixel_offset is not None
    assert first.position == (-120.0, -95.5, 0.0) and first.pixel_spacing == (0.7, 0.8)
    assert np.array_equal(load_volume(series), volume)


def test_implicit_vr_and_long_header_take_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    implicit = write_ct_slice(tmp_path / "implicit.dcm", np.ones((4, 4)), series_uid="1.9")
    ds = pydicom.dcmread(implicit)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(implicit, enforce_file_format=True)
    long = write_ct_slice(tmp_path / "long.dcm", np.ones((4, 4)), series_uid="1.9")
    ds = pydicom.dcmread(long)
    # 40 KB of private data before the pixels, like a Siemens CSA header: a second read.
    ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(0x10, "OB", b"\0" * 40000)
    ds.save_as(long, enforce_file_format=True)
    assert _assert_same_as_pydicom([implicit, long], monkeypatch) == 2


def test_odd_values_go_the_pydicom_way(tmp_path: Path) -> None:
    odd = write_ct_slice(tmp_path / "odd.dcm", np.ones((4, 4)), series_uid="1.9")
    ds = pydicom.dcmread(odd)
    with pytest.warns(UserWarning, match="Invalid value for VR IS"):
        ds.NumberOfFrames = "1.0"  # pydicom reads it as 1; read_plain does not guess
    ds.PatientName = ["Doe^Jane", "Roe^Jane"]  # several values: pydicom's rendering
    ds.save_as(odd, enforce_file_format=True)
    assert read_plain(odd) is None
    inst = dicom.describe(odd)
    assert inst.frames == 1 and inst.patient_name == str(pydicom.dcmread(odd).PatientName)


def test_errors_are_pydicom_s_whichever_reader(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "cut.dcm", np.ones((8, 8)), series_uid="1.9")
    path.write_bytes(path.read_bytes()[:-10])
    assert read_plain(path) is not None
    assert _outcome(path) == ("UnreadableFile", "pixel data truncated: 118 of 128 bytes")
