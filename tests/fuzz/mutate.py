"""A seeded mutator over small real files: pydicom's test files and a PNG and JPEG from cv2.

Mutant `index` of `seed` is always the same bytes (its own random.Random), so a failure found in
a run of 2,000 is rebuilt alone: `python -m tests.fuzz.mutate SEED INDEX OUT`.
Mutations: byte flips, truncation, header values through pydicom (sizes, frames, window,
spacing, transfer syntax, photometric, palette, character set: huge, negative, garbage, wrong
VR), element deletion, pixel data cut or padded, nested sequences and functional groups;
for raster files flips, truncation and forged dimensions.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import random
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom import config
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import AllTransferSyntaxes, DeflatedExplicitVRLittleEndian

# Small files shipped with pydicom itself (no download), one per encoding the loader meets.
DICOM_SEEDS = (
    "MR_small.dcm",  # explicit VR little endian, 16-bit
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, RGB
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_08.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle_2frame.dcm",  # multi-frame RGB RLE
    "MR_small_jp2klossless.dcm",
    "image_dfl.dcm",  # deflated
    "rtdose_1frame.dcm",  # implicit, 32-bit, multi-frame family
    "rtdose.dcm",  # 15 frames
    "SC_rgb_small_odd.dcm",  # native RGB, odd size
)
RASTER_SEEDS = ("grey8.png", "grey16.png", "rgb.jpg")

_US = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "SamplesPerPixel")
_US += ("PixelRepresentation", "PlanarConfiguration")
_US_VALUES = (0, 1, 2, 3, 4, 7, 12, 15, 24, 31, 33, 64, 255, 4096, 30000, 65535)
_TEXT_VALUES = ("", "abc", "-5", "0", "NaN", "inf", "-inf", "1e400", "1e308", "1.5", "\\")
_TEXT_VALUES += ("1\\2\\3", "9" * 40, "2147483648", "-2147483649", "\x00\x01", "é")
# Values for string-valued keywords (VR IS, DS, CS, UI, LO, PN ...).
_STRINGS: dict[str, tuple[str, ...]] = {
    "NumberOfFrames": ("0", "-5", "1000000", "2147483648", "2", "3", "16", "1.5", "1e9"),
    "WindowCenter": ("40", "-1e308", "1e308\\-1e308", "0\\0\\0", "40\\400"),
    "WindowWidth": ("0", "-1", "1e-300", "1e308", "400\\0", "1"),
    "RescaleSlope": ("0", "-1", "1e308", "1e-308"),
    "RescaleIntercept": ("-1e308", "1e308", "-1024"),
    "PixelSpacing": ("0\\0", "-1\\-1", "1", "1\\2\\3", "NaN\\inf", "1e400\\1", "0.5\\0.5"),
    "ImagerPixelSpacing": ("0\\0", "abc\\1", "1e-320\\1"),
    "ImagePositionPatient": ("a\\b\\c", "NaN\\0\\0", "1e308\\1e308\\1e308", "0\\0"),
    "ImageOrientationPatient": ("0\\0\\0\\0\\0\\0", "NaN\\0\\0\\0\\1\\0", "1\\0\\0"),
    "PhotometricInterpretation": (
        "RGB",
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_RCT",
        "YBR_ICT",
        "YBR_PARTIAL_420",
        "HSV",
        "ARGB",
        "CMYK",
        "garbage",
    ),  # fmt: skip
    "SpecificCharacterSet": ("ISO 2022 IR 87", "ISO_IR 192", "garbage", "ISO_IR 100\\ISO_IR 6"),
    "VOILUTFunction": ("SIGMOID", "LINEAR_EXACT", "garbage"),
    "Modality": ("SEG", "RTSTRUCT", "", "CT"),
    "InstanceNumber": ("abc", "1e99", "-1"),
    "SeriesNumber": ("abc", "99999999999999999999"),
    "SOPInstanceUID": ("", "1." * 60, "x"),
    "SeriesInstanceUID": ("", "1.2", "\x00"),
    "StudyInstanceUID": ("", "1.2"),
    "SOPClassUID": ("", "1.2.840.10008.1.3.10", "1.2.840.10008.5.1.4.1.1.66.4"),
    "PatientName": ("=" * 10, "\x1b$B" + "x" * 10, "a" * 5000, "^^^^"),
    "PatientID": ("=1+1", "\x00" * 8, "a" * 5000),
    "StudyDate": ("abcdefgh", "99999999", ""),
    "RedPaletteColorLookupTableDescriptor": ("0\\0\\16", "65535\\0\\8", "256\\0\\7", "1"),
    "LargestImagePixelValue": ("-1", "65535"),
}
_META_SYNTAXES = tuple(str(ts) for ts in AllTransferSyntaxes) + ("1.2.3", "", "garbage")
_DELETABLE = (
    "Rows", "Columns", "BitsAllocated", "BitsStored", "SamplesPerPixel", "PixelData",
    "PhotometricInterpretation", "NumberOfFrames", "PixelRepresentation", "SOPInstanceUID",
    "SeriesInstanceUID", "StudyInstanceUID", "SOPClassUID", "PlanarConfiguration", "Modality",
    "WindowCenter", "WindowWidth", "RescaleSlope", "PixelSpacing",
)  # fmt: skip
_WRONG_VRS = ("OB", "UN", "LO", "FD", "SS", "SL", "UL", "OW", "AT")


@dataclass(frozen=True)
class Mutant:
    index: int
    seed_file: str
    ops: tuple[str, ...]
    data: bytes
    suffix: str


def seeds() -> dict[str, bytes]:
    """Seed file name -> bytes (DICOM from pydicom, raster made here)."""
    return dict(_seeds())


@functools.cache
def _seeds() -> tuple[tuple[str, bytes], ...]:
    import cv2  # only the raster seeds need it

    out = [
        (name, Path(get_testdata_file(name, download=False)).read_bytes()) for name in DICOM_SEEDS
    ]
    ramp = np.add.outer(np.arange(24), np.arange(32)).astype(np.uint8) * 4
    rgb = np.dstack([ramp, ramp[::-1], 255 - ramp])
    for name, image, ext in (
        ("grey8.png", ramp, ".png"),
        ("grey16.png", ramp.astype(np.uint16) * 250, ".png"),
        ("rgb.jpg", rgb, ".jpg"),
    ):
        ok, buf = cv2.imencode(ext, image)
        assert ok, name
        out.append((name, buf.tobytes()))
    return tuple(out)


@contextlib.contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """Writing odd values is the point: pydicom must not refuse or fix them while a mutant is
    made. Only then: pydicom's settings are global, and other tests rely on its warnings."""
    settings = config.settings
    before = settings.writing_validation_mode, settings.reading_validation_mode
    settings.writing_validation_mode = settings.reading_validation_mode = config.IGNORE
    try:
        yield
    finally:
        settings.writing_validation_mode, settings.reading_validation_mode = before


def mutant(seed: int, index: int) -> Mutant:
    """Mutant `index` of run `seed`: a seed file (in turn) with one to three mutations."""
    with _lenient_pydicom():
        return _mutant(seed, index)


def _mutant(seed: int, index: int) -> Mutant:
    rng = random.Random(f"medviewer-fuzz:{seed}:{index}")
    files = _seeds()
    name, data = files[index % len(files)]
    raster = name in RASTER_SEEDS
    chosen = [
        rng.choice(_RASTER_OPS if raster else _DICOM_OPS) for _ in range(rng.choice((1, 1, 2, 3)))
    ]
    # Deep nesting goes last and once: pydicom re-encoding a 300-deep dataset under an unknown
    # character set took gigabytes (in pydicom's writer; medviewer reads such a file in 75 MB).
    if nest in chosen:
        chosen = [op for op in chosen if op is not nest] + [nest]
    ops: list[str] = []
    for op in chosen:
        data, what = op(data, rng)
        ops.append(what)
    return Mutant(index, name, tuple(ops), data, Path(name).suffix)


# --- byte-level -------------------------------------------------------------------------------


def flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    buf = bytearray(data)
    if not buf:
        return data, "flip (empty)"
    # Headers are where parsers decide things: most flips land in the first 2 KB.
    span = min(len(buf), 2048) if rng.random() < 0.7 else len(buf)
    count = rng.choice((1, 1, 2, 4, 8, 32))
    for _ in range(count):
        buf[rng.randrange(span)] = rng.randrange(256)
    return bytes(buf), f"flip {count} byte(s) in the first {span}"


def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(len(data) + 1)
    return data[:cut], f"truncate to {cut} of {len(data)}"


# --- DICOM through pydicom --------------------------------------------------------------------


def _edit(
    data: bytes, rng: random.Random, edit: Callable[[Dataset, random.Random], str]
) -> tuple[bytes, str]:
    """Parse, edit and re-encode with the file's own encoding; a file pydicom cannot take
    back gets byte flips instead."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            implicit, little = ds.original_encoding
            deflated = ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
            what = edit(ds, rng)
            return _encode(ds, bool(implicit), little is not False, deflated, data), what
    except Exception:  # noqa: BLE001 - any failure to re-encode: mutate the bytes instead
        return flip(data, rng)


def _encode(ds: Dataset, implicit: bool, little: bool, deflated: bool, original: bytes) -> bytes:
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = implicit, little
    write_dataset(body, ds)
    dataset = body.getvalue()
    if deflated:
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        dataset = packer.compress(dataset) + packer.flush()
    if original[128:132] != b"DICM":
        return dataset
    head = DicomBytesIO()
    head.is_implicit_VR, head.is_little_endian = False, True
    head.write(original[:128] + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=False)
    return head.getvalue() + dataset


def set_value(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    def edit(ds: Dataset, rng: random.Random) -> str:
        if rng.random() < 0.45:
            keyword = rng.choice(_US)
            value = rng.choice(_US_VALUES)
            ds[keyword] = DataElement(keyword, "US", value)
            return f"{keyword} = {value}"
        keyword = rng.choice(list(_STRINGS))
        value = rng.choice(_STRINGS[keyword] + _TEXT_VALUES)
        vr = pydicom.datadict.dictionary_VR(keyword)
        if keyword == "SpecificCharacterSet" and rng.random() < 0.5:
            ds.PatientName = "Añø^é"  # a value the character set must decode
        ds[keyword] = DataElement(keyword, vr, value)
        return f"{keyword} = {value[:40]!r}"

    return _edit(data, rng, edit)


def wrong_vr(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """A header element with a VR and bytes of the wrong type (explicit VR writes the VR)."""

    def edit(ds: Dataset, rng: random.Random) -> str:
        keyword = rng.choice(_US + tuple(_STRINGS))
        vr = rng.choice(_WRONG_VRS)
        raw = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 2, 3, 4, 8, 17))))
        ds[keyword] = DataElement(keyword, vr, raw)
        return f"{keyword} as {vr} {raw.hex()}"

    return _edit(data, rng, edit)


def set_syntax(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Another transfer syntax in the file meta, the dataset left as it was encoded."""

    def edit(ds: Dataset, rng: random.Random) -> str:
        ds.file_meta.TransferSyntaxUID = value = rng.choice(_META_SYNTAXES)
        return f"TransferSyntaxUID = {value!r}"

    return _edit(data, rng, edit)


def delete(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    def edit(ds: Dataset, rng: random.Random) -> str:
        present = [k for k in _DELETABLE if k in ds]
        if rng.random() < 0.2 or not present:
            tag = rng.choice(list(ds.keys()))
            del ds[tag]
            return f"delete {tag}"
        keyword = rng.choice(present)
        del ds[keyword]
        return f"delete {keyword}"

    return _edit(data, rng, edit)


def pixel_data(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """PixelData cut, padded, emptied or replaced by a forged encapsulated stream."""

    def edit(ds: Dataset, rng: random.Random) -> str:
        pixels = ds.PixelData
        how = rng.choice(("cut", "pad", "empty", "fragments", "odd"))
        if how == "cut":
            ds.PixelData = pixels[: rng.randrange(len(pixels) + 1)]
        elif how == "pad":
            ds.PixelData = pixels + bytes(rng.choice((1, 2, 1000, 100_000)))
        elif how == "empty":
            ds.PixelData = b""
        elif how == "fragments":
            # An offset table then items whose lengths point anywhere.
            items = [struct.pack("<HHI", 0xFFFE, 0xE000, rng.choice((0, 4, 0xFFFFFFF0)))]
            items += [b"\xff\xd8\xff" + bytes(rng.randrange(256) for _ in range(30))]
            ds.PixelData = b"".join(items)
        else:
            ds.PixelData = pixels[:-1] if len(pixels) > 1 else b"\0"
        return f"PixelData {how}"

    return _edit(data, rng, edit)


def nest(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Sequences nested deep, or functional groups holding garbage spacing and position."""

    def edit(ds: Dataset, rng: random.Random) -> str:
        if rng.random() < 0.5:
            depth = rng.choice((1, 3, 20, 100, 300))
            inner = Dataset()
            inner.PatientID = "inner"
            for _ in range(depth):
                outer = Dataset()
                outer.ReferencedImageSequence = Sequence([inner])
                inner = outer
            ds.ReferencedImageSequence = inner.ReferencedImageSequence
            return f"sequence nested {depth} deep"
        group = Dataset()
        measures = Dataset()
        measures.PixelSpacing = rng.choice(_STRINGS["PixelSpacing"] + _TEXT_VALUES)
        group.PixelMeasuresSequence = Sequence([measures] if rng.random() < 0.8 else [])
        position = Dataset()
        position.ImagePositionPatient = rng.choice(_STRINGS["ImagePositionPatient"])
        group.PlanePositionSequence = Sequence([position])
        which = rng.choice(("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"))
        setattr(ds, which, Sequence([group] * rng.choice((0, 1, 2))))
        return f"{which} with garbage spacing and position"

    # pydicom writes nested sequences recursively.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return _edit(data, rng, edit)
    finally:
        sys.setrecursionlimit(limit)


# --- raster ------------------------------------------------------------------------------------


def dimensions(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Forge the width and height in a PNG IHDR (CRC fixed or not) or a JPEG SOF."""
    buf = bytearray(data)
    width, height = (rng.choice((0, 1, 7, 65535, 30000, 1 << 20, 0x7FFFFFFF)) for _ in range(2))
    if buf.startswith(b"\x89PNG") and len(buf) >= 33:
        struct.pack_into(">II", buf, 16, width, height)
        if rng.random() < 0.5:
            buf[24] = rng.choice((1, 2, 4, 8, 16, 3, 0))  # bit depth
        if rng.random() < 0.8:
            struct.pack_into(">I", buf, 29, zlib.crc32(bytes(buf[12:29])))
        return bytes(buf), f"PNG IHDR {width}x{height}"
    at = buf.find(b"\xff\xc0")
    if at < 0 or at + 9 > len(buf):
        return flip(data, rng)
    width, height = width & 0xFFFF, height & 0xFFFF
    struct.pack_into(">HH", buf, at + 5, height, width)
    return bytes(buf), f"JPEG SOF {width}x{height}"


_DICOM_OPS = (flip, flip, truncate, set_value, set_value, set_value, wrong_vr, set_syntax, delete)
_DICOM_OPS += (delete, pixel_data, nest)
_RASTER_OPS = (flip, flip, truncate, dimensions, dimensions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write one mutant, to reproduce a failure")
    parser.add_argument("seed", type=int)
    parser.add_argument("index", type=int)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    m = mutant(args.seed, args.index)
    args.out.write_bytes(m.data)
    print(f"{args.out}: {m.seed_file}: {'; '.join(m.ops)} ({len(m.data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
