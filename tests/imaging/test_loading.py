"""Loading pixels: the native fast path equals pydicom, volumes stack in order, frames check."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medviewer.imaging import FrameRef, ImageLoader, ImageLoadError, load_volume, scan
from tests.imaging.helpers import write_ct_slice


def _pydicom_frames(path: Path, frames: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = pydicom.dcmread(path).pixel_array
    return arr[np.newaxis] if frames == 1 else arr


def test_fast_path_equals_pydicom_on_every_shipped_native_file(pydicom_test_files: Path) -> None:
    folders = [pydicom_test_files]
    data_store = pydicom.data.get_testdata_file("mlut_18.dcm", download=False)
    if data_store:  # pydicom-data's files: 12-bit signed data and other real quirks
        folders.append(Path(data_store).parent)
    catalog = scan(folders)
    native = [i for i in catalog.instances() if i.raw_dtype is not None]
    assert len(native) > 20
    loader = ImageLoader(cache_bytes=0)
    for inst in native:
        ours = loader.frames(inst)
        ref = _pydicom_frames(inst.path, inst.frames)
        assert ours.dtype == ref.dtype, inst.path
        assert np.array_equal(ours, ref), inst.path
    for series in catalog.series():
        if (
            all(i.raw_dtype for i in series.instances)
            and len({i.shape for i in series.instances}) == 1
        ):
            refs = [_pydicom_frames(i.path, i.frames) for i in series.instances]
            assert np.array_equal(load_volume(series), np.concatenate(refs)), series.uid


def test_load_volume_stacks_in_slice_order(tmp_path: Path) -> None:
    for k, z in enumerate([2.0, 0.0, 1.0]):
        px = np.full((6, 5), int(z * 100), np.int16)
        px[0, 0] = -7  # asymmetric marker
        write_ct_slice(tmp_path / f"{k}.dcm", px, series_uid="1.9", position=(0, 0, z))
    (series,) = scan([tmp_path]).series()
    vol = load_volume(series)
    assert vol.shape == (3, 6, 5) and vol.dtype == np.int16
    assert list(vol[:, 1, 1]) == [0, 100, 200]
    assert (vol[:, 0, 0] == -7).all()


def test_load_volume_compressed_falls_back_to_decoder() -> None:
    from pydicom.data import get_testdata_file

    catalog = scan([get_testdata_file("MR_small_RLE.dcm")])
    vol = load_volume(catalog.series()[0])
    assert np.array_equal(vol[0], _pydicom_frames(catalog.instances()[0].path, 1)[0])


def test_load_volume_truncated_after_import(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "a.dcm", np.ones((8, 8)), series_uid="2.1")
    (series,) = scan([path]).series()
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ImageLoadError, match=r"pixel data truncated: 118 of 128 bytes"):
        load_volume(series)


def test_frame_out_of_range_named(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "a.dcm", np.ones((4, 4)), series_uid="2.2")
    (inst,) = scan([path]).instances()
    with pytest.raises(ImageLoadError, match="frame 3 asked for, the file has 1"):
        ImageLoader().image(FrameRef(inst, 2))


def test_image_carries_display_info_and_spacing(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "a.dcm", np.full((4, 4), 1024), series_uid="2.3")
    (inst,) = scan([path]).instances()
    image = ImageLoader().image(FrameRef(inst))
    assert image.info.intercept == -1024 and image.pixel_spacing == (0.7, 0.8)
    assert image.source == str(path)
