"""DICOM headers (indexing without decoding pixels) and pixel decoding, one frame or all."""

from __future__ import annotations

import functools
import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from medviewer.imaging.budget import DecodeBudget
from medviewer.imaging.errors import (
    PYDICOM_ERRORS,
    ImageLoadError,
    NotAnImage,
    UnreadableFile,
    os_reason,
)
from medviewer.imaging.header import LONG_VRS, Header, Values, read_plain
from medviewer.imaging.records import Instance, Problem, frame_shape

NOT_MEDICAL = "not a DICOM or image file"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# Objects that carry PixelData but are not images a clinician reviews here.
NON_IMAGE_MODALITIES = {
    "SEG": "a DICOM SEG (segmentation), not an image; `medviewer import-masks` brings in its masks"
}
# Header values kept in the file meta, not the dataset.
_FILE_META = frozenset({"MediaStorageSOPClassUID", "TransferSyntaxUID"})
# Attributes that enhanced multi-frame objects keep in a functional group -> its sequence.
_FUNCTIONAL = {
    "PixelSpacing": "PixelMeasuresSequence",
    "ImagePositionPatient": "PlanePositionSequence",
    "ImageOrientationPatient": "PlaneOrientationSequence",
}


class _BoundedFile(io.BufferedReader):
    """A file whose read(n) asks for no more than the bytes left in it. pydicom reads an
    element's value with one read(length): a forged length (4 GB in a 10 KB file) would
    allocate 4 GB before the read came up short, a MemoryError under a memory limit."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(self._size - self.tell(), 0))
        return super().read(size)


def _quiet_read(path: Path, **kwargs: Any) -> Dataset:
    # pydicom warns about every odd value; we report what matters as a reason instead.
    with _BoundedFile(path) as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(fp, **kwargs)


def read_dataset_header(path: Path) -> tuple[Dataset, int | None]:
    """The dataset without pixel data, and the file offset where the PixelData element starts
    (in a deflated file: its offset in the inflated dataset)."""
    try:
        with _BoundedFile(path) as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = _file_meta(fp)
            if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                return _read_deflated(path, fp, meta, header_only=True)
            fp.seek(0)
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            offset = fp.tell()
            tag = fp.read(4)
            # stop_before_pixels halts at (7FE0,0010) in either byte order.
            return ds, offset if tag in (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10") else None
    except InvalidDicomError:
        return _read_without_meta(path), None
    except PYDICOM_ERRORS as e:
        raise UnreadableFile(path, f"DICOM header unreadable: {e}") from e


def _file_meta(fp: BinaryIO) -> FileMetaDataset | None:
    """The file meta of a file with a preamble, leaving fp at the dataset; None without one."""
    if fp.read(132)[128:] != b"DICM":
        return None
    return pydicom.filereader._read_file_meta_info(fp)


# pydicom inflates a Deflated Explicit VR Little Endian dataset whole before it reads a single
# element, even to stop before the pixels: 1.4 MB of file can be 2 GB of zeros. These files
# are inflated here a bounded amount at a time instead.
_DEFLATED_HEADER_MAX = 16 << 20  # the inflated elements before PixelData (a few KB in practice)


def _read_deflated(
    path: Path, fp: BinaryIO, meta: FileMetaDataset, header_only: bool, pixel_bytes: int = 0
) -> tuple[Dataset, int | None]:
    """A deflated file's dataset (fp at its start) and the PixelData offset in it, inflating at
    most the header's worth (header_only) or the header and `pixel_bytes`; UnreadableFile when
    the dataset is larger than that."""
    start = fp.tell()
    limits = (
        [1 << 18, _DEFLATED_HEADER_MAX] if header_only else [_DEFLATED_HEADER_MAX + pixel_bytes]
    )
    for limit in limits:
        fp.seek(start)
        data, complete = _inflate(path, fp, limit)
        buf = DicomBytesIO(data)
        stop = (lambda tag, vr, length: tag == 0x7FE00010) if header_only else None
        dataset = pydicom.filereader.read_dataset(buf, False, True, stop_when=stop)
        at = buf.tell()
        reached = header_only and buf.read(4) == b"\xe0\x7f\x10\x00"
        if reached or complete:
            ds = FileDataset(str(path), dataset, None, meta, False, True)
            return ds, at if reached else None
    if header_only:
        reason = f"the elements before its pixel data inflate to more than {limit >> 20} MB"
    else:
        reason = f"it inflates to more than {limit >> 20} MB, more than its header declares"
    raise UnreadableFile(path, f"deflated dataset refused: {reason}")


def _inflate(path: Path, fp: BinaryIO, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the raw deflate stream from fp, and whether that is all of it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    try:
        while len(out) < limit and not inflater.eof:
            chunk = inflater.unconsumed_tail or fp.read(1 << 16)
            if not chunk:
                return bytes(out), True  # a truncated stream: the element reads will say so
            out += inflater.decompress(chunk, limit - len(out))
    except zlib.error as e:
        raise UnreadableFile(path, f"deflated dataset corrupt: {e}") from e
    return bytes(out), inflater.eof


def _read_without_meta(path: Path) -> Dataset:
    """A file without preamble and file meta: accept it if it looks like an image."""
    try:
        ds = _quiet_read(path, force=True, stop_before_pixels=True)
    except Exception as e:
        raise UnreadableFile(path, NOT_MEDICAL) from e
    if not ("SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)):
        raise UnreadableFile(path, NOT_MEDICAL)
    if "TransferSyntaxUID" not in ds.file_meta:
        # Without file meta, DICOM's default transfer syntax applies.
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    return ds


def dicomdir_files(path: Path) -> tuple[list[Path], list[Problem]]:
    """The files a DICOMDIR references, resolved against its folder, and the references that
    lead outside that folder (`..`, absolute paths, symlinks out): those are never opened."""
    ds = _quiet_read(path)
    root = path.parent.resolve()
    files: list[Path] = []
    outside: list[Problem] = []
    for record in ds.DirectoryRecordSequence:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # odd CS values: converted lazily, here
            ref = record.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            file = path.parent.joinpath(*map(str, parts))
            if file.resolve().is_relative_to(root):
                files.append(file)
            else:
                reason = f"outside the folder of DICOMDIR {path}, not followed"
                outside.append(Problem(file, reason))
    return files, outside


class _DatasetValues:
    """A pydicom dataset as header Values, for the rules in _instance_from_header.

    Each value is converted (by pydicom, lazily) only when a rule asks for it, so odd values
    fail where they always did and a DICOMDIR is never decoded.
    """

    def __init__(self, ds: Dataset, path: Path) -> None:
        self._ds = ds
        self._path = path

    def get(self, keyword: str, default: Any = None, /) -> Any:
        try:
            if keyword in _FUNCTIONAL:
                value = _functional(self._ds, _FUNCTIONAL[keyword], keyword)
                return default if value is None else value
            return self._source(keyword).get(keyword, default)
        except PYDICOM_ERRORS as e:
            # pydicom converts a value on first access: a malformed one fails here.
            tag = Tag(tag_for_keyword(keyword))
            raise UnreadableFile(
                self._path,
                f"invalid {dictionary_description(tag)} ({tag.group:04X},{tag.element:04X}): {e}",
            ) from e

    def __contains__(self, keyword: object, /) -> bool:
        if not isinstance(keyword, str):
            return False
        if keyword in _FUNCTIONAL:
            return self.get(keyword) is not None
        return keyword in self._source(keyword)

    def _source(self, keyword: str) -> Dataset:
        return self._ds.file_meta if keyword in _FILE_META else self._ds


def _functional(ds: Dataset, sequence: str, attribute: str) -> Any:
    """An attribute from the top level, else from the shared, else the first per-frame group."""
    if attribute in ds:
        return ds[attribute].value
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in ds.get(groups, [])[:1]:
            for item in group.get(sequence, [])[:1]:
                if attribute in item:
                    return item[attribute].value
    return None


def _int(values: Values, keyword: str, path: Path, default: int | None = None) -> int | None:
    raw = values.get(keyword)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        tag = Tag(tag_for_keyword(keyword))
        raise UnreadableFile(
            path,
            f"invalid {dictionary_description(tag)} ({tag.group:04X},{tag.element:04X}): {raw!r}",
        ) from None


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _require(values: Values, keyword: str, tag: str, path: Path) -> int:
    value = _int(values, keyword, path)
    if value is None:
        name = dictionary_description(tag_for_keyword(keyword))
        raise UnreadableFile(path, f"pixel data without {name} ({tag})")
    return value


def _at_least_1(value: int, keyword: str, path: Path) -> None:
    if value < 1:
        tag = Tag(tag_for_keyword(keyword))
        name = dictionary_description(tag)
        raise UnreadableFile(path, f"{name} ({tag.group:04X},{tag.element:04X}) is {value}")


_IS_LIMIT = 2**31  # an IS or US value lies in -2^31..2^31-1 (PS3.5 6.2)


def _optional_int(values: Values, keyword: str) -> int | None:
    """Numbers used only for ordering and display: an invalid one is ignored, not fatal.
    Out of range counts as invalid (SQLite stores no integer past 2^63)."""
    value = values.get(keyword)
    try:
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and -_IS_LIMIT <= number < _IS_LIMIT else None


def describe(path: Path, budget: DecodeBudget | None = None) -> Instance:
    """Index one DICOM file from its header alone; raise UnreadableFile/NotAnImage with a reason
    (OverBudget when the header declares more than `budget`, by default the configured one)."""
    with warnings.catch_warnings():
        # Values are converted lazily, so pydicom's warnings about odd ones come from here.
        warnings.simplefilter("ignore")
        # Plain little-endian files are read without pydicom, ~7x faster; read_plain leaves
        # anything unusual to pydicom. The same rules then apply to either header.
        header = read_plain(path) or _read_header(path)
        return _instance_from_header(path, header, budget or DecodeBudget.from_env())


def _read_header(path: Path) -> Header:
    """Any file's header, the pydicom way."""
    ds, pixel_data_at = read_dataset_header(path)
    return Header(_DatasetValues(ds, path), pixel_data_at)


def _instance_from_header(path: Path, header: Header, budget: DecodeBudget) -> Instance:
    """describe()'s rules, whichever reader found the header: the Instance, or why there is none.

    The checks run in this order on purpose: a file with several faults reports the first.
    """
    values = header.values
    if (
        values.get("MediaStorageSOPClassUID", "") == DICOMDIR_SOP_CLASS
        or "DirectoryRecordSequence" in values
    ):
        raise NotAnImage(path, "a DICOMDIR (an index of other files)")
    sop_class = _uid(str(values.get("SOPClassUID", "")))
    if header.pixel_data_at is None:
        kind = sop_class.name if sop_class else "unknown object"
        raise NotAnImage(path, f"no pixel data ({kind})")
    modality = str(values.get("Modality", ""))
    if modality in NON_IMAGE_MODALITIES:
        raise NotAnImage(path, NON_IMAGE_MODALITIES[modality])
    ts = values.get("TransferSyntaxUID")
    if not ts:
        raise UnreadableFile(path, "file meta has no Transfer Syntax UID (0002,0010)")
    ts = _uid(str(ts))
    if not ts.is_transfer_syntax:  # its encoding and decoder are unknown
        raise UnreadableFile(path, f"unknown Transfer Syntax UID (0002,0010): {str(ts)[:80]!r}")
    rows = _require(values, "Rows", "0028,0010", path)
    columns = _require(values, "Columns", "0028,0011", path)
    bits = _require(values, "BitsAllocated", "0028,0100", path)
    frames = _int(values, "NumberOfFrames", path, 1) or 1
    samples = _int(values, "SamplesPerPixel", path, 1) or 1
    # What the decoders and the display can use; refused here, not at the first decode.
    _at_least_1(rows, "Rows", path)
    _at_least_1(columns, "Columns", path)
    _at_least_1(frames, "NumberOfFrames", path)
    if samples not in (1, 3):
        raise UnreadableFile(path, f"{samples} samples per pixel (0028,0002): 1 or 3 are read")
    if bits not in (8, 16, 32):
        raise UnreadableFile(path, f"Bits Allocated (0028,0100) is {bits}: 8, 16 or 32 are read")
    photometric = str(values.get("PhotometricInterpretation", "MONOCHROME2"))
    budget.check(path, frames, frame_shape(rows, columns, samples, photometric), bits)
    _check_decoder(ts, path)

    raw_dtype = None
    offset = None
    if not ts.is_compressed and not ts.is_deflated:  # deflated: no file offsets to read
        # The fast reader has the element from its buffer already; pydicom's reader does not.
        offset, length = header.pixel_element or _native_element(path, header.pixel_data_at, ts)
        # YBR_FULL_422 stores two samples per pixel in native syntaxes (PS3.5 8.2.1).
        per_pixel = 2 if photometric == "YBR_FULL_422" else samples
        expected = rows * columns * frames * per_pixel * bits // 8
        available = min(length, os.path.getsize(path) - offset)
        if available < expected:
            raise UnreadableFile(path, f"pixel data truncated: {available} of {expected} bytes")
        interleaved = samples == 1 or (
            photometric == "RGB" and _optional_int(values, "PlanarConfiguration") in (None, 0)
        )
        # Palette and YBR need pydicom's conversion; plain grey and interleaved RGB are raw.
        plain = photometric in ("MONOCHROME1", "MONOCHROME2", "RGB")
        if ts.is_little_endian and bits in (8, 16, 32) and interleaved and plain:
            signed = _int(values, "PixelRepresentation", path, 0) == 1
            raw_dtype = f"<{'i' if signed else 'u'}{bits // 8}"

    # Projection radiographs may give only the detector's spacing.
    spacing = _floats(values.get("PixelSpacing"), 2) or _floats(values.get("ImagerPixelSpacing"), 2)
    return Instance(
        path=path,
        kind="dicom",
        sop_instance_uid=str(values.get("SOPInstanceUID", "")) or str(path),
        series_uid=str(values.get("SeriesInstanceUID", "")) or f"no-series:{path.parent}",
        study_uid=str(values.get("StudyInstanceUID", "")) or f"no-study:{path.parent}",
        patient_id=str(values.get("PatientID", "")),
        patient_name=str(values.get("PatientName", "")),
        rows=rows,
        columns=columns,
        frames=frames,
        samples_per_pixel=samples,
        photometric=photometric,
        bits_allocated=bits,
        bits_stored=_optional_int(values, "BitsStored") or bits,
        modality=modality,
        body_part=str(values.get("BodyPartExamined", "")).strip().upper(),
        study_description=str(values.get("StudyDescription", "")),
        study_date=str(values.get("StudyDate", "")),
        series_description=str(values.get("SeriesDescription", "")),
        series_number=_optional_int(values, "SeriesNumber"),
        instance_number=_optional_int(values, "InstanceNumber"),
        transfer_syntax=str(ts),
        transfer_syntax_name=ts.name,
        pixel_spacing=spacing,  # type: ignore[arg-type]
        position=_floats(values.get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(values.get("ImageOrientationPatient"), 6),
        pixel_offset=offset if raw_dtype else None,
        raw_dtype=raw_dtype,
    )


@functools.lru_cache(maxsize=64)
def _uid(value: str) -> UID:
    """UID(value), kept: a series repeats a few, and UID() checks its string each time."""
    return UID(value)


def _check_decoder(ts: UID, path: Path) -> None:
    if not ts.is_compressed:
        return
    try:
        decoder = pydicom.pixels.get_decoder(ts)
    except NotImplementedError:
        raise UnreadableFile(path, f"unsupported transfer syntax: {ts.name} ({ts})") from None
    if not decoder.is_available:
        family = next((name for key, name in _FAMILIES if ts.keyword.startswith(key)), ts.name)
        raise UnreadableFile(path, f"no decoder installed for {family} ({ts.name})")


# Transfer syntax keyword prefixes, most specific first, and the name users know them by.
_FAMILIES = [
    ("JPEG2000", "JPEG 2000"),
    ("HTJ2K", "High-Throughput JPEG 2000"),
    ("JPEGLS", "JPEG-LS"),
    ("JPEGXL", "JPEG XL"),
    ("JPEG", "JPEG"),
    ("RLE", "RLE"),
]


def _native_element(path: Path, offset: int, ts: UID) -> tuple[int, int]:
    """(value offset, value length) of a native PixelData element whose tag starts at offset."""
    with open(path, "rb") as fp:
        fp.seek(offset)
        head = fp.read(12)
    endian = "<" if ts.is_little_endian else ">"
    if len(head) < 8:
        raise UnreadableFile(path, "pixel data truncated: 0 bytes present")
    if ts.is_implicit_VR:
        return offset + 8, struct.unpack(endian + "I", head[4:8])[0]
    if head[4:6] in LONG_VRS:
        return offset + 12, struct.unpack(endian + "I", head[8:12])[0]
    return offset + 8, struct.unpack(endian + "H", head[6:8])[0]


def read_frames(instance: Instance) -> np.ndarray:
    """All frames of a DICOM instance, shape (frames, rows, columns[, samples]).

    Greyscale stays in stored values; YBR is converted to RGB and palette colour is applied, so
    colour images come back as RGB.
    """
    if instance.raw_dtype is not None:
        return read_native(instance)
    path = instance.path
    try:
        ds = _read_pixel_dataset(instance)
        if "TransferSyntaxUID" not in ds.file_meta:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
            if instance.photometric == "PALETTE COLOR":
                arr = pydicom.pixels.apply_color_lut(arr, ds)
    except (FileNotFoundError, PermissionError) as e:
        raise ImageLoadError(path, os_reason(e)) from e
    except UnreadableFile as e:
        raise ImageLoadError(path, e.reason) from e
    except Exception as e:
        raise ImageLoadError(path, _decode_reason(e, instance.transfer_syntax_name)) from e
    if instance.frames == 1:
        arr = arr[np.newaxis]
    return arr


def _read_pixel_dataset(instance: Instance) -> Dataset:
    """The whole dataset; a deflated one inflated no further than its header's pixels."""
    if instance.transfer_syntax != DeflatedExplicitVRLittleEndian:
        return _quiet_read(instance.path, force=True)
    with _BoundedFile(instance.path) as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = _file_meta(fp)
        if meta is None:
            raise UnreadableFile(instance.path, "file meta missing")
        pixels = instance.frames * instance.rows * instance.columns * instance.samples_per_pixel
        limit = pixels * instance.bits_allocated // 8
        return _read_deflated(instance.path, fp, meta, header_only=False, pixel_bytes=limit)[0]


def read_native(instance: Instance) -> np.ndarray:
    """Fast path: native little-endian pixels straight from the file, no dataset parse."""
    assert instance.raw_dtype is not None and instance.pixel_offset is not None
    count = instance.frames * instance.rows * instance.columns * instance.samples_per_pixel
    try:
        arr = np.fromfile(
            instance.path, dtype=instance.raw_dtype, count=count, offset=instance.pixel_offset
        )
    except OSError as e:
        raise ImageLoadError(instance.path, os_reason(e)) from e
    if arr.size < count:
        got, want = arr.size * arr.itemsize, count * arr.itemsize
        raise ImageLoadError(instance.path, f"pixel data truncated: {got} of {want} bytes")
    shape = (instance.frames, instance.rows, instance.columns)
    if instance.samples_per_pixel > 1:
        shape = (*shape, instance.samples_per_pixel)  # interleaved RGB only (see describe)
    arr = arr.reshape(shape).astype(arr.dtype.newbyteorder("="), copy=False)
    return fix_stored_bits(arr, instance.bits_stored)


def fix_stored_bits(arr: np.ndarray, bits_stored: int, out: np.ndarray | None = None) -> np.ndarray:
    """Keep only the stored bits, as pydicom does: mask unsigned, sign-extend signed values.

    12-bit CT in 16-bit words may carry overlay bits or an unextended sign in bits 12-15.
    With out=arr it works in place, without temporaries the size of a volume.
    """
    bits = arr.dtype.itemsize * 8
    if not 0 < bits_stored < bits:
        return arr
    if arr.dtype.kind == "i":
        shift = bits - bits_stored
        return np.right_shift(np.left_shift(arr, shift, out=out), shift, out=out)
    return np.bitwise_and(arr, np.array((1 << bits_stored) - 1, dtype=arr.dtype), out=out)


def _decode_reason(e: Exception, syntax: str) -> str:
    text = str(e)
    if "less than expected" in text:
        return "pixel data truncated: " + text.split("(")[1].split(")")[0].replace(" vs ", " of ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and "all available plugins" in lines[0]:
        # One line per plugin; the first names the real decoder (pylibjpeg), pillow's is noise.
        return f"{syntax} pixel data could not be decoded: {lines[1]}"
    return f"{syntax} pixel data could not be decoded: {text}"
