"""The header values describe() works from, and a reader that gets them without pydicom.

pydicom spends ~0.7 ms a file on parsing and lazy value conversion, most of an import's time.
read_plain() walks the raw elements of a little-endian file's header instead (its first 16 KB,
up to 256 KB) and decodes only the ~30 values describe() needs. It returns None for anything
unusual (big endian, deflate, functional groups, other character sets, unexpected VRs, odd
values), and the pydicom reader in dicom.py answers. Both readers produce a Header and one
function, dicom._instance_from_header, applies the rules to either: the paths cannot drift.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydicom.uid import AllTransferSyntaxes, ImplicitVRLittleEndian


class Values(Protocol):
    """Header values by keyword, the file meta's included, as pydicom gives them: str, int,
    float or a sequence of floats. PixelSpacing and the plane position and orientation come
    from the functional groups when the top level lacks them."""

    def get(self, keyword: str, default: Any = None, /) -> Any: ...

    def __contains__(self, keyword: object, /) -> bool: ...


@dataclass(frozen=True)
class Header:
    """What describe() reads from a DICOM file, whichever reader read it."""

    values: Values
    pixel_data_at: int | None  # file offset of the top-level PixelData tag; None: there is none
    # (value offset, length) of that element, when the reader has it already; else it is read.
    pixel_element: tuple[int, int] | None = None


# Explicit VR element VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_VRS = LONG_VRS | frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split()
)

# Only these are read: tag -> (keyword, VR). A wanted element with another VR is unusual.
_WANTED: dict[int, tuple[str, bytes]] = {
    0x00020002: ("MediaStorageSOPClassUID", b"UI"),
    0x00020010: ("TransferSyntaxUID", b"UI"),
    0x00080005: ("SpecificCharacterSet", b"CS"),
    0x00080016: ("SOPClassUID", b"UI"),
    0x00080018: ("SOPInstanceUID", b"UI"),
    0x00080020: ("StudyDate", b"DA"),
    0x00080060: ("Modality", b"CS"),
    0x00081030: ("StudyDescription", b"LO"),
    0x0008103E: ("SeriesDescription", b"LO"),
    0x00100010: ("PatientName", b"PN"),
    0x00100020: ("PatientID", b"LO"),
    0x00180015: ("BodyPartExamined", b"CS"),
    0x00181164: ("ImagerPixelSpacing", b"DS"),
    0x0020000D: ("StudyInstanceUID", b"UI"),
    0x0020000E: ("SeriesInstanceUID", b"UI"),
    0x00200011: ("SeriesNumber", b"IS"),
    0x00200013: ("InstanceNumber", b"IS"),
    0x00200032: ("ImagePositionPatient", b"DS"),
    0x00200037: ("ImageOrientationPatient", b"DS"),
    0x00280002: ("SamplesPerPixel", b"US"),
    0x00280004: ("PhotometricInterpretation", b"CS"),
    0x00280006: ("PlanarConfiguration", b"US"),
    0x00280008: ("NumberOfFrames", b"IS"),
    0x00280010: ("Rows", b"US"),
    0x00280011: ("Columns", b"US"),
    0x00280030: ("PixelSpacing", b"DS"),
    0x00280100: ("BitsAllocated", b"US"),
    0x00280101: ("BitsStored", b"US"),
    0x00280103: ("PixelRepresentation", b"US"),
}
# Their presence changes the answer or the way pydicom stops reading: functional groups (the
# values sit in nested items), DICOMDIR records, float pixel data.
_UNUSUAL_TAGS = frozenset({0x52009229, 0x52009230, 0x00041220, 0x7FE00008, 0x7FE00009})
_PIXEL_DATA = 0x7FE00010
_EXPLICIT = struct.Struct("<HH2sH")  # group, element, VR, 2-byte length
_IMPLICIT = struct.Struct("<HHI")  # group, element, 4-byte length
_LENGTH = struct.Struct("<I")  # the 4-byte length of a long-VR explicit element
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_FIRST_READ = 16384  # most CT/MR headers are 1-4 KB
_LAST_READ = 262144  # headers longer than this go the pydicom way
_MAX_DEPTH = 8  # nested undefined-length sequences we follow before giving up

# Transfer syntaxes whose dataset is little endian and not deflated -> explicit VR. Compressed
# ones are included: only their pixel data differs, and the rules deal with that.
_SYNTAXES = {
    str(ts): ts != ImplicitVRLittleEndian
    for ts in AllTransferSyntaxes
    if ts.is_little_endian and not ts.is_deflated
}
# The character sets pydicom decodes as one plain codec (no ISO 2022 code extensions).
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_IS = re.compile(r" *[+-]?[0-9]+ *")
_DS = re.compile(r" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")


class _Unusual(Exception):
    """Not a file read_plain handles: the pydicom reader does, with its exact error messages."""


class _PastBuffer(_Unusual):
    """The next element lies past the bytes read so far."""


def read_plain(path: Path) -> Header | None:
    """The header of a plain little-endian DICOM file, as the pydicom reader would give it;
    None for anything unusual."""
    try:
        return _read_plain(path)
    except (_Unusual, OSError, ValueError, struct.error):  # ValueError: bad text encoding too
        return None


def _read_plain(path: Path) -> Header:
    with open(path, "rb") as fp:
        buf = fp.read(_FIRST_READ)
        try:
            return _parse(buf)
        except _PastBuffer:
            if len(buf) < _FIRST_READ:
                raise  # that was the whole file: no pixel data, or a truncated one
            # A long header (private CSA data, overlays): one more try, then pydicom.
            return _parse(buf + fp.read(_LAST_READ - _FIRST_READ))


def _parse(buf: bytes) -> Header:
    """The Header from a file's first bytes; _PastBuffer when the header goes on past them."""
    if buf[128:132] != b"DICM":
        raise _Unusual  # no preamble: pydicom's lenient reading decides what it is
    raw: dict[str, tuple[bytes, bytes]] = {}  # keyword -> (VR, value bytes)
    body = _walk(buf, 132, True, raw, meta=True)
    syntax = raw.get("TransferSyntaxUID")
    explicit = _SYNTAXES.get(_decode(*syntax, "ascii")) if syntax else None
    if explicit is None:
        raise _Unusual
    # pydicom trusts the first element's look over the transfer syntax: we want them to agree.
    if all(0x40 < b < 0x5B for b in buf[body + 4 : body + 6]) != explicit:
        raise _Unusual
    pixel_data_at = _walk(buf, body, explicit, raw, meta=False)
    _, _, value_offset, length = _element(buf, pixel_data_at, explicit)
    charset = raw.pop("SpecificCharacterSet", None)
    codec = _CODECS.get(_decode(*charset, "ascii") if charset else "")
    if codec is None:
        raise _Unusual
    values = {keyword: _decode(vr, value, codec) for keyword, (vr, value) in raw.items()}
    return Header(values, pixel_data_at, (value_offset, length))


def _element(buf: bytes, pos: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR, value offset, length) of the element at pos; the VR is b"" when implicit."""
    if pos + 8 > len(buf):
        raise _PastBuffer
    if explicit:
        group, elem, vr, length = _EXPLICIT.unpack_from(buf, pos)
        if group != 0xFFFE:  # item tags have no VR in any syntax
            if vr not in _VRS:
                raise _Unusual
            if vr not in LONG_VRS:
                return group << 16 | elem, vr, pos + 8, length
            if pos + 12 > len(buf):
                raise _PastBuffer
            return group << 16 | elem, vr, pos + 12, _LENGTH.unpack_from(buf, pos + 8)[0]
    group, elem, length = _IMPLICIT.unpack_from(buf, pos)
    return group << 16 | elem, b"", pos + 8, length


def _walk(
    buf: bytes, pos: int, explicit: bool, raw: dict[str, tuple[bytes, bytes]], meta: bool
) -> int:
    """Collect the wanted top-level elements as (VR, bytes); return where the walk stopped:
    at the first dataset element (meta) or at the PixelData tag."""
    while True:
        if meta and buf[pos : pos + 2] != b"\x02\x00":
            return pos  # before parsing: the dataset's VR encoding may differ from the meta's
        tag, vr, start, length = _element(buf, pos, explicit)
        if tag == _PIXEL_DATA:
            return pos
        if tag in _UNUSUAL_TAGS or (not meta and tag >> 16 in (0x0002, 0xFFFE)):
            raise _Unusual  # also a stray file meta element or item in the dataset
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, start, explicit, tag, vr, 0)
            continue
        if tag in _WANTED:
            keyword, wanted_vr = _WANTED[tag]
            if vr and vr != wanted_vr:
                raise _Unusual
            # Cut short if it runs past buf; then so does the next element, and we give up.
            raw[keyword] = (wanted_vr, buf[start : start + length])
        pos = start + length


def _skip_undefined(buf: bytes, pos: int, explicit: bool, tag: int, vr: bytes, depth: int) -> int:
    """Offset just past the undefined-length sequence or item (tag) whose value starts at pos."""
    if depth > _MAX_DEPTH or vr == b"UN":
        raise _Unusual  # UN of undefined length holds implicit VR items: pydicom's business
    end = _ITEM_END if tag == _ITEM else _SEQUENCE_END
    while True:
        inner, inner_vr, start, length = _element(buf, pos, explicit)
        if inner == end:
            return start
        if inner in (_ITEM_END, _SEQUENCE_END):
            raise _Unusual  # the other delimiter: broken nesting
        if length == _UNDEFINED:
            pos = _skip_undefined(buf, start, explicit, inner, inner_vr, depth + 1)
        else:
            pos = start + length


def _decode(vr: bytes, value: bytes, codec: str) -> Any:
    """The value as pydicom gives it, for the VRs in _WANTED; _Unusual wherever it might not be.

    codec decodes LO and PN (the specific character set); the other VRs are ASCII.
    """
    if vr == b"US":
        if len(value) not in (0, 2):
            raise _Unusual
        return struct.unpack("<H", value)[0] if value else None
    if vr in (b"LO", b"PN"):
        if b"\x1b" in value or (vr == b"PN" and b"=" in value):
            raise _Unusual  # code extensions; ideographic or phonetic name groups
        text = value.rstrip(b"\0 ").decode(codec)
    else:
        text = value.decode("ascii").rstrip("\0 ")  # pydicom: latin-1, but non-ASCII is odd
    if vr == b"DS":
        parts = text.strip().split("\\")
        if parts == [""]:
            return None
        if not all(_DS.fullmatch(p) for p in parts):
            raise _Unusual  # pydicom is more lenient with some of the rest, fails on others
        numbers = tuple(float(p) for p in parts)
        return numbers if len(numbers) > 1 else numbers[0]
    if "\\" in text:
        raise _Unusual  # several values: leave pydicom's rendering of them to pydicom
    if vr == b"IS":
        if not text.strip():
            return None
        if not _IS.fullmatch(text):
            raise _Unusual  # "1.0", "1A" and the like: pydicom accepts some, reports others
        return int(text)
    return text.strip() if vr == b"UI" else text  # pydicom's UID() strips leading spaces too
