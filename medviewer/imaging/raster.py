"""PNG (8/16 bit), JPEG and TIFF files: one image per file, grouped by folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from medviewer.imaging.budget import DecodeBudget
from medviewer.imaging.dicom import NOT_MEDICAL
from medviewer.imaging.errors import ImageLoadError, UnreadableFile
from medviewer.imaging.records import Instance

# The decode budget, checked from the header in describe(), decides how large an image may be:
# Pillow's own fixed limit would warn at 89 and refuse at 179 megapixels whatever it is set to.
PILImage.MAX_IMAGE_PIXELS = None

# Magic bytes decide, not the file name: clinicians' folders are full of odd extensions.
_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}


def sniff(path: Path) -> str | None:
    """'PNG', 'JPEG' or 'TIFF' when the file starts like one, else None."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
    except OSError:
        return None
    if head[128:132] == b"DICM":
        return None  # a DICOM file whose preamble happens to look like a TIFF header
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def describe(path: Path, budget: DecodeBudget) -> Instance:
    """Index a raster image from its header (Pillow reads headers lazily; no decode); OverBudget
    when its size is over the decode budget."""
    fmt = sniff(path)
    if fmt is None:
        raise UnreadableFile(path, NOT_MEDICAL)
    try:
        with PILImage.open(path) as im:
            width, height = im.size
            mode = im.mode
            frames = getattr(im, "n_frames", 1)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UnreadableFile(path, f"{fmt} header unreadable: {e}") from e
    samples = {"RGB": 3, "RGBA": 3, "P": 3, "CMYK": 3, "YCbCr": 3}.get(mode, 1)
    folder = str(path.parent.resolve())
    instance = Instance(
        path=path,
        kind="raster",
        sop_instance_uid=str(path.resolve()),
        series_uid=f"folder:{folder}",
        study_uid=f"folder:{folder}",
        patient_id="",
        patient_name=path.parent.name,
        rows=height,
        columns=width,
        frames=1,  # one image per file; extra TIFF pages are ignored
        samples_per_pixel=samples,
        photometric="RGB" if samples == 3 else "MONOCHROME2",
        bits_allocated=16 if mode.startswith("I;16") or mode == "I" else 8,
        modality="OT",
        series_description=path.parent.name,
        transfer_syntax_name=fmt + (f" ({frames} pages, first used)" if frames > 1 else ""),
    )
    budget.check_instance(instance)
    return instance


def read_pixels(instance: Instance) -> np.ndarray:
    """The image as (1, rows, columns) greyscale or (1, rows, columns, 3) RGB, bit depth kept."""
    data = np.fromfile(instance.path, dtype=np.uint8)  # OSError is mapped by the caller
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if arr is None:
        raise ImageLoadError(instance.path, "image could not be decoded (truncated or corrupt)")
    if arr.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB
        arr = cv2.cvtColor(arr, code)
        if instance.samples_per_pixel == 1:
            arr = arr[..., 0]
    if arr.shape[:2] != (instance.rows, instance.columns):
        raise ImageLoadError(
            instance.path,
            f"image is {arr.shape[1]}x{arr.shape[0]}, "
            f"its header said {instance.columns}x{instance.rows}",
        )
    return arr[np.newaxis]
