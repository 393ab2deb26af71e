"""`render` against DCMTK's dcmj2pnm on real files: what we show must match a reference viewer.

dcmj2pnm truncates where `render` rounds to nearest, so up to 1 grey level of difference is
expected; anything more is a bug in the modality LUT, window, VOI LUT or MONOCHROME1 handling.
Each case also checks that the reference image has enough distinct grey levels for the
comparison to mean something (a window that clips everything to black would match anything).

Known dcmj2pnm 3.6.7 behaviour the cases work around, rather than copy:
- it ignores windows in an enhanced object's functional groups (FrameVOILUTSequence), so the
  header window of eCT_Supplemental is given to it explicitly;
- it truncates fractional rescaled values (slope 0.5 or 0.01) to integers before windowing,
  where PS3.3 C.11.2.1.2 windows the real value, so the synthetic rescale case uses slope 2.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medviewer.imaging import dicom
from medviewer.imaging.display import PRESETS, Image, Window, render
from medviewer.imaging.loading import ImageLoader
from medviewer.imaging.records import FrameRef
from tests.conftest import sample_file

DCMJ2PNM = shutil.which("dcmj2pnm")
pytestmark = pytest.mark.skipif(DCMJ2PNM is None, reason="dcmj2pnm (DCMTK) not on PATH")

_LOADER = ImageLoader()


def dcmtk_render(path: Path, out_dir: Path, *options: str, frame: int = 0) -> np.ndarray:
    """dcmj2pnm's 8-bit rendering of one frame (0-based), overlays off."""
    assert DCMJ2PNM is not None
    out = out_dir / f"{path.stem}-{frame}.png"
    cmd = [DCMJ2PNM, "+on", "-O", "+F", str(frame + 1), *options, str(path), str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(cmd)} failed: {result.stderr}"
    ref = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert ref is not None, f"dcmj2pnm wrote no readable PNG for {path.name}"
    return ref


def window_options(window: Window) -> list[str]:
    return ["+Ww", repr(float(window.center)), repr(float(window.width))]


def load(path: Path, frame: int = 0) -> Image:
    """The image exactly as the viewer gets it."""
    return _LOADER.image(FrameRef(dicom.describe(path), frame))


def assert_matches(ours: np.ndarray, ref: np.ndarray, min_levels: int) -> int:
    """Same shape, uint8, at most 1 grey level apart; returns the largest difference."""
    assert ours.dtype == np.uint8
    assert ours.shape == ref.shape, f"shape {ours.shape} vs dcmj2pnm {ref.shape}"
    levels = len(np.unique(ref))
    assert levels >= min_levels, f"reference has only {levels} grey levels: weak comparison"
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    worst = int(diff.max())
    where = np.unravel_index(int(diff.argmax()), diff.shape)
    assert worst <= 1, (
        f"max difference {worst} grey levels at {where}: ours {ours[where]}, dcmj2pnm {ref[where]}"
        f"; {int((diff > 1).sum())} pixels differ by more than 1"
    )
    return worst


# (file, 0-based frame, window or None for the header's, minimum grey levels in the reference)
EXPLICIT_WINDOWS = [
    pytest.param("CT_small.dcm", 0, PRESETS["abdomen"], 200, id="CT-abdomen-40/400"),
    pytest.param("CT_small.dcm", 0, PRESETS["lung"], 150, id="CT-lung-(-600)/1500"),
    pytest.param("CT_small.dcm", 0, PRESETS["bone"], 100, id="CT-bone-400/1800"),
    # Narrow windows: half a unit of centre error (LINEAR vs LINEAR_EXACT) is many grey levels.
    pytest.param("CT_small.dcm", 0, Window(40, 10), 8, id="CT-narrow-40/10"),
    pytest.param("CT_small.dcm", 0, Window(40, 2), 2, id="CT-width-2"),
    pytest.param("CT_small.dcm", 0, Window(40, 1), 2, id="CT-width-1-threshold"),
    pytest.param("MR_small.dcm", 0, Window(500, 1000), 150, id="MR-500/1000"),
    pytest.param("RG1_UNCI.dcm", 0, Window(8000, 12000), 150, id="CR-MONOCHROME1-8000/12000"),
    pytest.param("emri_small.dcm", 4, Window(300, 600), 150, id="enhanced-MR-frame-5"),
    pytest.param("rtdose.dcm", 6, Window(1_025_000, 460_000), 40, id="RTDOSE-32bit-frame-7"),
    pytest.param("eCT_Supplemental.dcm", 1, Window(40, 400), 50, id="enhanced-CT-frame-2"),
]


@pytest.mark.parametrize(("name", "frame", "window", "min_levels"), EXPLICIT_WINDOWS)
def test_explicit_window_matches_dcmtk(
    name: str, frame: int, window: Window, min_levels: int, tmp_path: Path
) -> None:
    path = sample_file(name)
    ref = dcmtk_render(path, tmp_path, *window_options(window), frame=frame)
    assert_matches(render(load(path, frame), window), ref, min_levels)


@pytest.mark.parametrize(
    ("name", "min_levels"),
    [
        pytest.param("MR_small.dcm", 150, id="MR-600/1600"),
        # RG1_UNCI (MONOCHROME1) with its header window: test_monochrome1_is_inverted_like_dcmtk
    ],
)
def test_header_window_matches_dcmtk(name: str, min_levels: int, tmp_path: Path) -> None:
    path = sample_file(name)
    image = load(path)
    assert image.info.windows, f"{name} should carry a header window"
    ref = dcmtk_render(path, tmp_path, "+Wi", "1")
    assert_matches(render(image), ref, min_levels)


def test_monochrome1_is_inverted_like_dcmtk(tmp_path: Path) -> None:
    """RG1_UNCI is a MONOCHROME1 chest radiograph (low values white), with its header window.
    The un-inverted rendering must be far off, so the inversion is really what is compared."""
    path = sample_file("RG1_UNCI.dcm")
    image = load(path)
    assert image.info.photometric == "MONOCHROME1"
    ref = dcmtk_render(path, tmp_path, "+Wi", "1")
    ours = render(image)
    assert_matches(ours, ref, 150)
    as_mono2 = Image(image.pixels, dataclasses.replace(image.info, photometric="MONOCHROME2"))
    assert np.abs(render(as_mono2).astype(int) - ref.astype(int)).mean() > 50


def test_multiframe_renders_the_frame_asked_for(tmp_path: Path) -> None:
    path = sample_file("emri_small.dcm")
    window = Window(300, 600)
    ref = dcmtk_render(path, tmp_path, *window_options(window), frame=4)
    assert_matches(render(load(path, 4), window), ref, 150)
    first = render(load(path, 0), window)
    assert np.abs(first.astype(int) - ref.astype(int)).max() > 1, "frames 1 and 5 look alike"


def test_enhanced_ct_header_window_from_functional_groups(tmp_path: Path) -> None:
    """eCT_Supplemental keeps rescale and window in SharedFunctionalGroupsSequence. dcmj2pnm
    3.6.7 applies that rescale but not the window, so the window is passed to it explicitly."""
    path = sample_file("eCT_Supplemental.dcm")
    image = load(path, 1)
    assert (image.info.slope, image.info.intercept) == (1.0, -1024.0)
    assert image.info.windows and image.info.windows[0] == Window(49, 102, "header")
    ref = dcmtk_render(path, tmp_path, "+Ww", "49", "102", frame=1)
    assert_matches(render(image), ref, 50)


def test_sigmoid_voi_function_matches_dcmtk(tmp_path: Path) -> None:
    path = sample_file("CT_small.dcm")
    image = load(path)
    image = Image(image.pixels, dataclasses.replace(image.info, voi_function="SIGMOID"))
    window = Window(40, 400)
    ref = dcmtk_render(path, tmp_path, *window_options(window), "+Wfs")
    assert_matches(render(image, window), ref, 200)


def test_modality_lut_sequence_matches_dcmtk(tmp_path: Path) -> None:
    """mlut_18: signed 12-bit stored values through a 4096-entry, 16-bit Modality LUT."""
    path = sample_file("mlut_18.dcm")
    image = load(path)
    assert image.info.modality_lut is not None
    window = Window(32768, 65536)
    ref = dcmtk_render(path, tmp_path, *window_options(window))
    assert_matches(render(image, window), ref, 200)


def test_voi_lut_sequence_matches_dcmtk(tmp_path: Path) -> None:
    """vlut_04: an 8-bit image through a 256-entry, 16-bit VOI LUT."""
    path = sample_file("vlut_04.dcm")
    image = load(path)
    assert image.info.voi_lut is not None
    ref = dcmtk_render(path, tmp_path, "+Wl", "1")
    assert_matches(render(image), ref, 200)


# Files written here, read by both: LUT shapes the shipped samples do not cover.

RAMP_12BIT = np.arange(4096, dtype=np.int32).reshape(64, 64)  # every 12-bit value once


def _lut_item(descriptor: list[int], data: np.ndarray, descriptor_vr: str = "US") -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", descriptor_vr, descriptor)
    item.add_new("LUTData", "US", [int(v) for v in data])
    return item


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    **attributes: object,
) -> Path:
    """A 12-bit-in-16 secondary capture image, native explicit VR little endian."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = int(signed)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_8bit_voi_lut_with_4096_entries_matches_dcmtk(photometric: str, tmp_path: Path) -> None:
    """An 8-bit VOI LUT longer than 256 entries: inputs above 255 must not wrap."""
    lut = np.rint(255 * (np.arange(4096) / 4095) ** 0.5)
    path = write_image(
        tmp_path / "voi8.dcm",
        RAMP_12BIT,
        photometric=photometric,
        VOILUTSequence=[_lut_item([4096, 0, 8], lut)],
    )
    ref = dcmtk_render(path, tmp_path, "+Wl", "1")
    assert_matches(render(load(path)), ref, 240)


def test_voi_lut_with_offset_first_value_matches_dcmtk(tmp_path: Path) -> None:
    """A 10-bit VOI LUT mapping 1000..2023: below takes the first entry, above the last."""
    path = write_image(
        tmp_path / "voi10.dcm",
        RAMP_12BIT,
        VOILUTSequence=[_lut_item([1024, 1000, 10], np.arange(1024)[::-1])],
    )
    ref = dcmtk_render(path, tmp_path, "+Wl", "1")
    assert_matches(render(load(path)), ref, 240)


def test_voi_lut_output_range_is_the_descriptor_bit_depth(tmp_path: Path) -> None:
    """12 bits per entry but data only up to 2047: the top of the range is 4095, not 2047."""
    path = write_image(
        tmp_path / "voi12.dcm",
        RAMP_12BIT,
        VOILUTSequence=[_lut_item([4096, 0, 12], np.arange(4096) // 2)],
    )
    ref = dcmtk_render(path, tmp_path, "+Wl", "1")
    assert_matches(render(load(path)), ref, 100)
    assert ref.max() <= 128


def test_12bit_modality_lut_with_negative_first_value_matches_dcmtk(tmp_path: Path) -> None:
    """Signed stored values -2048..2047 through a 12-bit Modality LUT starting at -2048."""
    lut = np.clip(np.arange(4096) * 3 // 2, 0, 4095)
    item = _lut_item([4096, -2048, 12], lut, descriptor_vr="SS")
    item.ModalityLUTType = "US"
    path = write_image(
        tmp_path / "mlut12.dcm", RAMP_12BIT - 2048, signed=True, ModalityLUTSequence=[item]
    )
    window = Window(2000, 3000)
    ref = dcmtk_render(path, tmp_path, *window_options(window))
    assert_matches(render(load(path), window), ref, 240)


def test_rescale_and_first_of_two_header_windows_match_dcmtk(tmp_path: Path) -> None:
    path = write_image(
        tmp_path / "rescale.dcm",
        RAMP_12BIT,
        RescaleSlope="2",
        RescaleIntercept="-100",
        WindowCenter=["3000", "900"],
        WindowWidth=["200", "50"],
    )
    image = load(path)
    assert image.info.windows[0] == Window(3000, 200, "header")
    ref = dcmtk_render(path, tmp_path, "+Wi", "1")
    assert_matches(render(image), ref, 100)
