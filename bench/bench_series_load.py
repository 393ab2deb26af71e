"""Opening a CT series: N slices of 512x512 int16, uncompressed, written in shuffled file order.

Ours (medviewer.imaging) against a naive pydicom loop and, when installed, SimpleITK; reading
the files' bytes is the floor. All cases run with the OS page cache warm.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pydicom
from harness import Row, best_of
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medviewer.imaging import ImageLoader, load_volume, render, scan

NAME = "series_load"
SLICES, QUICK_SLICES = 300, 60
REPEAT, QUICK_REPEAT = 3, 2
SPEEDUP_TARGET = 2.0  # "index + load" and "load from index" against naive pydicom
FIRST_SLICE_TARGET = 0.050  # seconds


def source_ct() -> tuple[Dataset, str]:
    """A real 512x512 CT slice: 693_UNCI from pydicom-data, else CT_small (128x128) upscaled 4x."""
    path = get_testdata_file("693_UNCI.dcm", download=False)  # never fetch from the network
    if path is not None:
        return pydicom.dcmread(path), "693_UNCI.dcm"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = np.kron(ds.pixel_array, np.ones((4, 4), dtype=ds.pixel_array.dtype))
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [float(v) / 4 for v in ds.PixelSpacing]
    ds.PixelData = pixels.tobytes()
    return ds, "CT_small.dcm upscaled 4x"


def write_series(folder: Path, slices: int, ds: Dataset) -> None:
    """`slices` files of one series; file names are shuffled so that sorting matters."""
    base = ds.pixel_array.astype(np.int16)
    # Group lengths would be stale once pixel data is replaced; they are retired anyway.
    for tag in [t for t in ds.keys() if t.element == 0]:
        del ds[tag]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SeriesInstanceUID = generate_uid()
    x, y, z = (float(v) for v in ds.get("ImagePositionPatient", [0.0, 0.0, 0.0]))
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    names = list(range(slices))
    random.Random(0).shuffle(names)
    for k in range(slices):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [x, y, z + 2.5 * k]
        ds.SliceLocation = z + 2.5 * k
        # +k makes every slice distinct, so a wrong slice order fails the equality check.
        ds.PixelData = (base + k).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{names[k]:04d}.dcm", enforce_file_format=True)
    if hasattr(os, "sync"):
        os.sync()  # no write-back of the new files while we time


def read_raw(files: list[Path]) -> int:
    """The floor: every file's bytes, no parsing."""
    total = 0
    for f in files:
        with open(f, "rb") as fp:
            total += len(fp.read())
    return total


def naive_load(folder: Path) -> np.ndarray:
    """What a script would do: read every file, sort by InstanceNumber, stack the pixels."""
    datasets = [pydicom.dcmread(f) for f in folder.iterdir()]
    datasets.sort(key=lambda d: int(d.InstanceNumber))
    return np.stack([d.pixel_array for d in datasets])


def ours_index_and_load(folder: Path) -> np.ndarray:
    return load_volume(scan([folder]).series()[0])


def sitk_time(folder: Path, repeat: int) -> tuple[float | None, str]:
    """SimpleITK's series reader (GDCM) when installed; it is not a dependency."""
    try:
        import SimpleITK as sitk
    except ImportError:
        return None, "skipped: SimpleITK is not installed (it is not a dependency)"

    def load() -> np.ndarray:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        return sitk.GetArrayFromImage(reader.Execute())

    return best_of(load, repeat), f"SimpleITK {sitk.Version.VersionString()}"


def check_same(ours: np.ndarray, naive: np.ndarray) -> None:
    # Not an assert: it must hold under `python -O` too. A fast wrong answer is a failure.
    if ours.shape != naive.shape or ours.dtype != naive.dtype or not np.array_equal(ours, naive):
        raise RuntimeError(
            f"{NAME}: our volume {ours.shape} {ours.dtype} differs from naive pydicom's "
            f"{naive.shape} {naive.dtype}"
        )


def run(quick: bool = False) -> list[Row]:
    slices = QUICK_SLICES if quick else SLICES
    repeat = QUICK_REPEAT if quick else REPEAT
    with tempfile.TemporaryDirectory(prefix="medviewer-bench-") as tmp:
        folder = Path(tmp)
        ds, source = source_ct()
        write_series(folder, slices, ds)
        files = sorted(folder.iterdir())
        read_raw(files)  # warm the page cache once, so every case sees the same state

        catalog = scan([folder])
        if len(catalog.series()) != 1 or len(catalog.series()[0].instances) != slices:
            raise RuntimeError(
                f"{NAME}: scan found {catalog.series()}, not one {slices}-slice series"
            )
        series = catalog.series()[0]
        check_same(load_volume(series), naive_load(folder))
        check_same(ours_index_and_load(folder), naive_load(folder))

        def first_slice() -> np.ndarray:
            # A fresh loader: nothing cached, as when the user clicks the series.
            return render(ImageLoader().image(series.frames[0]))

        if first_slice().dtype != np.uint8:
            raise RuntimeError(f"{NAME}: render did not return uint8")

        raw = best_of(lambda: read_raw(files), repeat)
        naive = best_of(lambda: naive_load(folder), repeat)
        index_load = best_of(lambda: ours_index_and_load(folder), repeat)
        from_index = best_of(lambda: load_volume(series), repeat)
        first = best_of(first_slice, repeat)
        sitk, sitk_note = sitk_time(folder, repeat)

    size = f"{slices} slices 512x512 int16 from {source}, best of {repeat}"

    def vs_naive(case: str, ours: float, note: str = "") -> Row:
        met = naive / ours >= SPEEDUP_TARGET
        return Row(NAME, case, ours, "naive pydicom", naive, f">= {SPEEDUP_TARGET:g}x", met, note)

    return [
        vs_naive("index + load", index_load, note=size),
        vs_naive("load from index", from_index),
        Row(
            NAME,
            "first slice ready",
            first,
            target=f"< {FIRST_SLICE_TARGET * 1000:g} ms",
            met=first < FIRST_SLICE_TARGET,
        ),
        Row(NAME, "index + load", index_load, "SimpleITK series reader", sitk, note=sitk_note),
        Row(NAME, "load from index", from_index, "raw read (floor)", raw),
    ]
