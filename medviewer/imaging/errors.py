"""The errors a user can meet while reading images: each names the file and a human reason."""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.errors import BytesLengthException

# What pydicom raises on a malformed element besides InvalidDicomError, when it reads one or
# converts its value (values are converted lazily, on first access).
PYDICOM_ERRORS = (
    OSError,
    EOFError,
    ValueError,  # UnicodeDecodeError too
    struct.error,
    KeyError,
    TypeError,
    NotImplementedError,  # an unknown VR
    BytesLengthException,  # a value whose length is no multiple of its VR's size
)


class ImageLoadError(Exception):
    """Pixels of a file (or one frame of it) could not be read or decoded."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnreadableFile(Exception):
    """A file import cannot use: broken, truncated, undecodable or not a medical image at all."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NotAnImage(UnreadableFile):
    """A readable DICOM object that holds no image (a structured report, an RT plan, a SEG)."""


def os_reason(e: OSError) -> str:
    """A human reason for a failed read of a file that import had found."""
    if isinstance(e, FileNotFoundError):
        return "file no longer exists"
    if isinstance(e, PermissionError):
        return "permission denied"
    return f"cannot read file: {e.strerror or e}"
