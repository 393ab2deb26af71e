"""Pixels on demand: decode frames into the memory-capped cache and build display images."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

from medviewer.imaging import dicom, nifti_volumes, raster
from medviewer.imaging.budget import DecodeBudget, OverBudget
from medviewer.imaging.cache import DEFAULT_CACHE_BYTES, PixelCache
from medviewer.imaging.display import DisplayInfo, Image, info_from_dataset
from medviewer.imaging.errors import ImageLoadError, os_reason
from medviewer.imaging.records import FrameRef, Instance, Series

_HEADERS_KEPT = 256


class ImageLoader:
    """Loads frames for display, decoding each file once and keeping pixels in a PixelCache."""

    def __init__(
        self, cache_bytes: int = DEFAULT_CACHE_BYTES, budget: DecodeBudget | None = None
    ) -> None:
        self.cache = PixelCache(cache_bytes)
        self.budget = budget or DecodeBudget.from_env()
        self._headers: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def frames(self, instance: Instance) -> np.ndarray:
        """Every frame of an instance (frames, rows, columns[, 3]), from the cache when there."""
        # A 4D NIfTI's time points share a file: the UID tells them apart.
        key = ("frames", str(instance.path), instance.sop_instance_uid)
        return self.cache.get_or_load(key, lambda: read_frames(instance, self.budget))

    def image(self, ref: FrameRef) -> Image:
        """One frame with its display parameters."""
        inst = ref.instance
        if not 0 <= ref.frame < inst.frames:
            raise ImageLoadError(
                inst.path, f"frame {ref.frame + 1} asked for, the file has {inst.frames}"
            )
        pixels = self.frames(inst)[ref.frame]
        info = DisplayInfo(photometric=inst.photometric)
        if inst.kind == "dicom":
            info = info_from_dataset(self._header(inst), ref.frame)
        source = str(inst.path) + (f" [frame {ref.frame + 1}]" if inst.frames > 1 else "")
        return Image(pixels=pixels, info=info, pixel_spacing=inst.pixel_spacing, source=source)

    def _header(self, inst: Instance) -> Dataset:
        key = str(inst.path)
        with self._lock:
            if key in self._headers:
                self._headers.move_to_end(key)
                return self._headers[key]
        ds, _ = dicom.read_dataset_header(inst.path)
        with self._lock:
            self._headers[key] = ds
            if len(self._headers) > _HEADERS_KEPT:
                self._headers.popitem(last=False)
        return ds


def read_frames(instance: Instance, budget: DecodeBudget | None = None) -> np.ndarray:
    """Decode all frames of one file (DICOM or raster); raises ImageLoadError with a reason.

    The decode budget (by default the configured one) is checked first: an image indexed
    before the budget existed, or under a larger one, is refused before any allocation."""
    _within(instance, budget or DecodeBudget.from_env())
    try:
        if instance.kind == "raster":
            arr = raster.read_pixels(instance)
        elif instance.kind == "nifti":
            arr = nifti_volumes.read_frames(instance)
        else:
            arr = dicom.read_frames(instance)
    except OSError as e:
        raise ImageLoadError(instance.path, os_reason(e)) from e
    expected = (instance.frames, *instance.shape)
    if arr.shape != expected:
        raise ImageLoadError(
            instance.path, f"decoded pixels have shape {arr.shape}, the header says {expected}"
        )
    return arr


def _within(instance: Instance, budget: DecodeBudget) -> None:
    try:
        budget.check_instance(instance)
    except OverBudget as e:
        raise ImageLoadError(e.path, e.reason) from None


def load_volume(
    series: Series | Sequence[Instance], budget: DecodeBudget | None = None
) -> np.ndarray:
    """All frames of a series stacked into one array (slices, rows, columns) in display order.

    Native little-endian files are read straight into the output array, skipping pydicom.
    Each file is held to the decode budget (by default the configured one).
    """
    instances = series.instances if isinstance(series, Series) else list(series)
    if not instances:
        raise ValueError("series has no instances")
    budget = budget or DecodeBudget.from_env()
    for inst in instances:
        _within(inst, budget)
    first = instances[0]
    total = sum(i.frames for i in instances)
    shapes = {i.shape for i in instances}
    if len(shapes) > 1:
        raise ImageLoadError(
            first.path, f"series mixes image sizes {sorted(shapes)}; load slices one by one"
        )
    dtypes = {i.raw_dtype for i in instances}
    if len(dtypes) == 1 and first.raw_dtype is not None:
        out = np.empty((total, *first.shape), dtype=first.raw_dtype)
        k = 0
        for inst in instances:
            part = out[k : k + inst.frames]
            _read_native_into(inst, part)
            # In place while the slice is still in the CPU cache: no temporaries, one pass.
            dicom.fix_stored_bits(part, inst.bits_stored, out=part)
            k += inst.frames
        return out.astype(out.dtype.newbyteorder("="), copy=False)
    parts = [read_frames(i, budget) for i in instances]
    return np.concatenate(parts, axis=0)


def _read_native_into(inst: Instance, out: np.ndarray) -> None:
    assert inst.pixel_offset is not None
    view = memoryview(out.reshape(-1).view(np.uint8))
    try:
        with open(inst.path, "rb", buffering=0) as fp:
            fp.seek(inst.pixel_offset)
            got = fp.readinto(view)
    except OSError as e:
        raise ImageLoadError(inst.path, os_reason(e)) from e
    if got != out.nbytes:
        raise ImageLoadError(inst.path, f"pixel data truncated: {got} of {out.nbytes} bytes")
