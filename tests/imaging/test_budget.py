"""Hostile headers: the decode budget, the header rules import shares with render and
--verify, and deflated files read without inflating them whole (issue 17, items 3-5 and 7)."""

from __future__ import annotations

import struct
import tracemalloc
import zlib
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    generate_uid,
)

from medviewer.cli import main
from medviewer.config import Settings
from medviewer.imaging import ImageLoadError, read_frames, scan
from medviewer.imaging.budget import DecodeBudget
from medviewer.imaging.records import Instance


def _dataset(ts: str, rows: int = 8, columns: int = 8, bits: int = 8) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "P", "OT"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    return ds


def _native(path: Path, **header: object) -> Path:
    ds = _dataset(ExplicitVRLittleEndian)
    ds.PixelData = bytes(64)
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg(path: Path, frames: int) -> Path:
    """A 64x64 one-frame JPEG stream in a file whose header declares `frames` frames."""
    ds = _dataset(JPEGBaseline8Bit, 64, 64)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((64, 64), np.uint8))
    ds.PixelData = encapsulate([jpeg.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.NumberOfFrames = frames
    ds.save_as(path, enforce_file_format=True)
    return path


def _deflated(path: Path, rows: int, columns: int, pixel_bytes: int, tail: bytes = b"") -> Path:
    """A Deflated Explicit VR Little Endian file with `pixel_bytes` zeros of pixel data (streamed
    through zlib, so the test never holds them) and `tail` after them."""
    ds = _dataset(DeflatedExplicitVRLittleEndian, rows, columns)
    ds.PixelData = b"\0\0"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    data = out.getvalue()
    body_at = 144 + struct.unpack("<I", data[140:144])[0]  # past the file meta group
    body = zlib.decompress(data[body_at:], -zlib.MAX_WBITS)
    header = body[: body.rfind(b"\xe0\x7f\x10\x00")]
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as fp:
        fp.write(data[:body_at])
        fp.write(
            deflate.compress(header + b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<I", pixel_bytes))
        )
        zeros = bytes(1 << 20)
        for k in range(0, pixel_bytes, len(zeros)):
            fp.write(deflate.compress(zeros[: pixel_bytes - k]))
        fp.write(deflate.compress(tail) + deflate.flush())
    return path


def _reasons(catalog: object) -> dict[str, str]:
    return {p.path.name: p.reason for p in catalog.problems}  # type: ignore[attr-defined]


def test_defaults_admit_real_studies() -> None:
    budget = DecodeBudget()
    here = Path("x.dcm")
    budget.check(here, 1, (5000, 4000), 16)  # a mammogram
    budget.check(here, 1000, (600, 800, 3), 8)  # an ultrasound cine
    budget.check(here, 1000, (1024, 1024), 8)  # an angiography cine
    budget.check(here, 2000, (512, 512), 16)  # a CT in one enhanced multi-frame file


def test_frame_count_bombs_refused_at_import_naming_the_setting(tmp_path: Path) -> None:
    _jpeg(tmp_path / "million.dcm", 1_000_000)
    _jpeg(tmp_path / "two_to_31.dcm", 2**31)
    _jpeg(tmp_path / "minus_five.dcm", -5)
    catalog = scan([tmp_path])
    assert catalog.instances() == []
    assert _reasons(catalog) == {
        "million.dcm": "1,000,000 frames, over the decode budget of 10,000 (MEDVIEWER_MAX_FRAMES)",
        "two_to_31.dcm": "2,147,483,648 frames, over the decode budget of 10,000 "
        "(MEDVIEWER_MAX_FRAMES)",
        "minus_five.dcm": "Number of Frames (0028,0008) is -5",
    }


def test_jpeg_ls_declaring_30000_squared_refused(tmp_path: Path) -> None:
    ds = _dataset(JPEGLSLossless, 64, 64)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60)])
    ds["PixelData"].VR = "OB"
    ds.Rows = ds.Columns = 30000
    ds.save_as(tmp_path / "huge.dcm", enforce_file_format=True)
    assert _reasons(scan([tmp_path])) == {
        "huge.dcm": "30000x30000 is 900,000,000 pixels per frame, over the decode budget of "
        "64,000,000 (MEDVIEWER_MAX_FRAME_PIXELS)"
    }


def test_raster_size_checked_from_its_header(tmp_path: Path) -> None:
    png = tmp_path / "wide.png"
    cv2.imwrite(str(png), np.zeros((4, 5, 3), np.uint16))
    data = bytearray(png.read_bytes())
    data[16:24] = struct.pack(">II", 13000, 13000)  # IHDR width, height: never decoded
    data[29:33] = struct.pack(">I", zlib.crc32(data[12:29]))
    png.write_bytes(bytes(data))
    assert _reasons(scan([png])) == {
        "wide.png": "13000x13000 is 169,000,000 pixels per frame, over the decode budget of "
        "64,000,000 (MEDVIEWER_MAX_FRAME_PIXELS)"
    }
    # The budget is the one limit: Pillow's own (179 Mpx) no longer refuses a larger one.
    raised = DecodeBudget(frame_pixels=200_000_000, decoded_bytes=2 << 30)
    (inst,) = scan([png], raised).instances()
    assert (inst.columns, inst.rows) == (13000, 13000)


def test_decoded_bytes_budget(tmp_path: Path) -> None:
    path = _native(tmp_path / "a.dcm")
    catalog = scan([path], DecodeBudget(decoded_bytes=63))
    assert _reasons(catalog) == {
        "a.dcm": "0 MB of pixels once decoded, over the decode budget of 0 MB "
        "(MEDVIEWER_MAX_DECODED_MB)"
    }


def test_loader_refuses_an_indexed_image_over_the_budget(tmp_path: Path) -> None:
    """Images indexed before the budget existed (or under a larger one) are refused before
    decoding, not allocated."""
    (inst,) = scan([_jpeg(tmp_path / "a.dcm", 1)]).instances()
    bomb = Instance(**{**inst.__dict__, "frames": 2**31})
    with pytest.raises(ImageLoadError, match=r"over the decode budget .*MEDVIEWER_MAX_FRAMES"):
        read_frames(bomb)


def test_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDVIEWER_MAX_FRAMES", "2000000")
    monkeypatch.setenv("MEDVIEWER_MAX_FRAME_PIXELS", "5000")
    monkeypatch.setenv("MEDVIEWER_MAX_DECODED_MB", "4096")
    budget = Settings.from_env().decode_budget
    assert budget == DecodeBudget(frame_pixels=5000, frames=2_000_000, decoded_bytes=4 << 30)
    (inst,) = scan([_jpeg(tmp_path / "a.dcm", 1_000_000)]).instances()  # raised: admitted
    assert inst.frames == 1_000_000
    monkeypatch.setenv("MEDVIEWER_MAX_FRAMES", "many")
    with pytest.raises(ValueError, match="MEDVIEWER_MAX_FRAMES must be a whole number"):
        DecodeBudget.from_env()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"Rows": 0}, "Rows (0028,0010) is 0"),
        ({"Columns": 0}, "Columns (0028,0011) is 0"),
        ({"BitsAllocated": 1}, "Bits Allocated (0028,0100) is 1: 8, 16 or 32 are read"),
        ({"BitsAllocated": 7}, "Bits Allocated (0028,0100) is 7: 8, 16 or 32 are read"),
        ({"BitsAllocated": 12}, "Bits Allocated (0028,0100) is 12: 8, 16 or 32 are read"),
        ({"BitsAllocated": 64}, "Bits Allocated (0028,0100) is 64: 8, 16 or 32 are read"),
        ({"SamplesPerPixel": 2}, "2 samples per pixel (0028,0002): 1 or 3 are read"),
    ],
)
def test_headers_that_cannot_decode_refused_at_import(
    tmp_path: Path, header: dict[str, int], reason: str
) -> None:
    catalog = scan([_native(tmp_path / "bad.dcm", **header)])
    assert catalog.instances() == []
    assert _reasons(catalog) == {"bad.dcm": reason}


def test_render_says_why_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = _native(tmp_path / "rows0.dcm", Rows=0)
    assert main(["render", str(bad), "--out", str(tmp_path / "o.png")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}: Rows (0028,0010) is 0"
    # A garbled Window Center is ignored, like a garbled rescale: a percentile window shows it.
    odd = _native(tmp_path / "window.dcm")
    raw = odd.read_bytes()
    at = raw.index(b"\xe0\x7f\x10\x00")
    window = b"\x28\x00\x50\x10DS\x04\x00x1y2" + b"\x28\x00\x51\x10DS\x02\x0010"
    odd.write_bytes(raw[:at] + window + raw[at:])
    assert main(["render", str(odd), "--out", str(tmp_path / "w.png")]) == 0
    assert cv2.imread(str(tmp_path / "w.png")).shape[:2] == (8, 8)


def test_deflated_file_read_and_decoded(tmp_path: Path) -> None:
    """A deflated file was reported as having no pixel data; now it imports and decodes."""
    path = _deflated(tmp_path / "d.dcm", 8, 8, 64)
    (inst,) = scan([path]).instances()
    assert inst.transfer_syntax_name == "Deflated Explicit VR Little Endian"
    assert read_frames(inst).shape == (1, 8, 8)


def test_deflated_bomb_header_read_without_inflating_it(tmp_path: Path) -> None:
    """64 MB of pixel data in ~64 KB of file: its header is read from a bounded inflate."""
    path = _deflated(tmp_path / "big.dcm", 8192, 8192, 64 << 20)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        catalog = scan([path], DecodeBudget(frame_pixels=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _reasons(catalog) == {
        "big.dcm": "8192x8192 is 67,108,864 pixels per frame, over the decode budget of "
        "1,048,576 (MEDVIEWER_MAX_FRAME_PIXELS)"
    }
    assert peak < 8 << 20, f"{peak / 2**20:.0f} MB traced reading a header"


def test_deflated_dataset_larger_than_its_header_says_refused(tmp_path: Path) -> None:
    # 64 bytes of pixels declared, then 32 MB of trailing padding (FFFC,FFFC).
    tail = b"\xfc\xff\xfc\xffOB\0\0" + struct.pack("<I", 32 << 20) + bytes(32 << 20)
    path = _deflated(tmp_path / "d.dcm", 8, 8, 64, tail)
    (inst,) = scan([path]).instances()
    with pytest.raises(ImageLoadError) as err:
        read_frames(inst)
    assert err.value.reason == (
        "deflated dataset refused: it inflates to more than 16 MB, more than its header declares"
    )
