"""Malformed DICOM headers the fuzzer found (tests/fuzz): each ends in a clear reason or a
working fallback, never an unexpected error. Each file is a valid slice with one fault."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medviewer.imaging import FrameRef, ImageLoader, UnreadableFile, render, scan
from medviewer.imaging.dicom import describe
from medviewer.workspace import Workspace
from tests.imaging.helpers import write_ct_slice


def _slice(tmp_path: Path, **values: object) -> Path:
    """A valid 16x16 CT slice with the given header values set."""
    path = write_ct_slice(
        tmp_path / "slice.dcm", np.arange(256, dtype=np.int16).reshape(16, 16), series_uid="1.2.3"
    )
    if values:
        ds = pydicom.dcmread(path)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return path


def _patch(path: Path, old: bytes, new: bytes) -> Path:
    data = path.read_bytes()
    assert data.count(old) == 1, old
    path.write_bytes(data.replace(old, new))
    return path


@contextlib.contextmanager
def _address_space(extra: int) -> Iterator[None]:
    """This process may map `extra` more bytes while inside (as `make fuzz` caps its workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fp:
        vm = next(int(line.split()[1]) << 10 for line in fp if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_a_forged_element_length_allocates_no_more_than_the_file(tmp_path: Path) -> None:
    # A private OB element claiming ~4 GB in a 1 KB file: pydicom read(length) asked for 4 GB
    # at once, a MemoryError under a memory limit (the fuzzer's 2 GB cap).
    path = _slice(tmp_path)
    ds = pydicom.dcmread(path)
    ds.add_new(0x00091010, "OB", b"\0" * 4)
    ds.save_as(path)
    _patch(
        path,
        b"\x09\x00\x10\x10OB\x00\x00\x04\x00\x00\x00",
        b"\x09\x00\x10\x10OB\x00\x00" + bytes([0xF0, 0xFF, 0xFF, 0xFF]),
    )
    with _address_space(512 << 20), pytest.raises(UnreadableFile) as e:
        describe(path)
    assert "pixel data" in e.value.reason


def test_an_unknown_transfer_syntax_is_named(tmp_path: Path) -> None:
    path = _slice(tmp_path)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.3"
    ds.save_as(path, enforce_file_format=False)
    with pytest.raises(UnreadableFile, match=r"unknown Transfer Syntax UID \(0002,0010\): '1.2.3'"):
        describe(path)


def test_a_value_pydicom_cannot_convert_names_its_element(tmp_path: Path) -> None:
    # An unknown VR ("Cx") on Modality: pydicom raised NotImplementedError on first access.
    path = _patch(_slice(tmp_path), b"\x08\x00\x60\x00CS", b"\x08\x00\x60\x00Cx")
    with pytest.raises(UnreadableFile, match=r"invalid Modality \(0008,0060\): Unknown"):
        describe(path)


def test_a_garbled_file_meta_length_is_a_header_error(tmp_path: Path) -> None:
    # (0002,0000) with an unknown VR: pydicom raised BytesLengthException reading the meta.
    path = _patch(_slice(tmp_path), b"\x02\x00\x00\x00UL\x04\x00", b"\x02\x00\x00\x00:L\x04\x00")
    catalog = scan([path])
    assert [p.reason.split(":")[0] for p in catalog.problems] == ["DICOM header unreadable"]


def test_a_series_number_past_sqlite_integers_is_ignored(tmp_path: Path) -> None:
    # IS values past 2^63 made `medviewer import` fail with OverflowError in SQLite.
    path = _slice(tmp_path, SeriesNumber=1234)
    _patch(path, b"\x20\x00\x11\x00IS\x04\x001234", b"\x20\x00\x11\x00IS\x14\x00" + b"9" * 20)
    _patch(path, b"\x20\x00\x13\x00IS\x02\x001 ", b"\x20\x00\x13\x00IS\x0c\x00-30000000000")
    instance = describe(path)
    assert (instance.series_number, instance.instance_number) == (None, None)
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.import_paths([path]).added == 1


def test_a_garbled_window_width_renders_with_a_percentile_window(tmp_path: Path) -> None:
    # Window Width with an unknown VR: `render` failed with NotImplementedError.
    path = _slice(tmp_path, WindowCenter="40", WindowWidth="400", SOPInstanceUID=generate_uid())
    _patch(path, b"\x28\x00\x51\x10DS", b"\x28\x00\x51\x10\x44\xb6")
    image = ImageLoader(cache_bytes=0).image(FrameRef(describe(path), 0))
    assert image.info.windows == ()
    assert render(image).shape == (16, 16)
