"""Display pipeline on small synthetic images: modality LUT, VOI window or LUT, MONOCHROME1."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from medviewer.imaging.display import (
    PRESETS,
    DisplayInfo,
    Image,
    Window,
    apply_window,
    auto_window,
    default_window,
    info_from_dataset,
    modality_values,
    render,
)


def linear_reference(x: np.ndarray, c: float, w: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 LINEAR, written straight from the standard, in float64."""
    x = np.asarray(x, dtype=np.float64)
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0, y)
    return np.where(x > c - 0.5 + (w - 1) / 2, 255, y)


def grey(pixels: object, **info: object) -> Image:
    return Image(pixels=np.asarray(pixels), info=DisplayInfo(**info))  # type: ignore[arg-type]


def lut_item(descriptor: list[int], data: list[int], descriptor_vr: str = "US") -> Dataset:
    item = Dataset()
    item.add_new("LUTDescriptor", descriptor_vr, descriptor)
    item.add_new("LUTData", "US", data)
    return item


def roundtrip(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """Write and read back, so elements carry their VRs and encodings as from a real file."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(buffer, force=True)


# --- the LINEAR window at its edges ---------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "w"), [(40, 400), (-600, 1500), (0, 2), (100, 3), (10.5, 21), (2047.5, 4096)]
)
def test_linear_window_edges_and_ramp(c: float, w: float) -> None:
    low = c - 0.5 - (w - 1) / 2  # at or below: black
    high = c - 0.5 + (w - 1) / 2  # above: white
    edges = np.array([low - 1000, low - 1, low, high + 0.01, high + 1, high + 1000], np.float32)
    assert apply_window(edges, Window(c, w)).tolist() == [0, 0, 0, 255, 255, 255]
    ramp = np.linspace(low - 10, high + 10, 2001, dtype=np.float32)
    ours = apply_window(ramp, Window(c, w))
    assert ours.dtype == np.uint8
    assert np.abs(ours.astype(np.float64) - linear_reference(ramp, c, w)).max() <= 0.5 + 1e-3
    assert np.all(np.diff(ours.astype(int)) >= 0)


def test_linear_window_centre_is_mid_grey_not_shifted_by_half() -> None:
    # LINEAR puts mid-grey at c - 0.5; LINEAR_EXACT at c. With width 10 that is 14 grey levels.
    values = np.array([39.5, 40.0], np.float32)
    assert apply_window(values, Window(40, 10)).tolist() == [128, 142]
    assert apply_window(values, Window(40, 10), "LINEAR_EXACT").tolist() == [115, 128]


def test_width_one_is_a_threshold_at_centre_minus_half() -> None:
    values = np.array([9.0, 10.0, 10.001, 11.0], np.float32)
    assert apply_window(values, Window(10.5, 1)).tolist() == [0, 0, 255, 255]
    # A width under 1 (not valid DICOM, but a drag can produce it) behaves as width 1.
    assert apply_window(values, Window(10.5, 0.2)).tolist() == [0, 0, 255, 255]


def test_linear_exact_edges() -> None:
    c, w = 100.0, 50.0
    values = np.array([c - w / 2 - 1, c - w / 2, c, c + w / 2, c + w / 2 + 1], np.float32)
    assert apply_window(values, Window(c, w), "LINEAR_EXACT").tolist() == [0, 0, 128, 255, 255]


def test_sigmoid_is_centred_and_monotonic() -> None:
    values = np.linspace(-1000, 1000, 101, dtype=np.float32)
    out = apply_window(values, Window(0, 400), "SIGMOID")
    assert out[50] == 128  # 255 / 2 at the centre
    assert out[0] == 0 and out[-1] == 255
    assert np.all(np.diff(out.astype(int)) >= 0)
    assert np.all(out.astype(int) + out[::-1].astype(int) - 255 <= 1)  # point-symmetric


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_degenerate_width_gives_a_clean_threshold(function: str) -> None:
    values = np.array([-1.0, 0.0, 1.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero / NaN cast warnings
        out = apply_window(values, Window(0.5 if function == "LINEAR" else 0, 0), function)
    assert out.tolist() == [0, 0, 255]


# --- modality LUT: rescale and LUT sequence -------------------------------------------------


def test_rescale_is_applied_before_the_window() -> None:
    # Stored 1024 is 0 HU with intercept -1024: black in a 0..1 HU window, 1025 white.
    image = grey([[0, 1000, 1024, 1025, 2000]], intercept=-1024.0)
    assert render(image, Window(1, 2)).tolist() == [[0, 0, 0, 255, 255]]
    image = grey([[500, 512, 525]], slope=2.0, intercept=-1024.0)  # -> -24, 0, 26 HU
    out = render(image, Window(0, 50))
    assert out.tolist() == [[5, 130, 255]]
    np.testing.assert_array_equal(modality_values(image), [[-24, 0, 26]])


def test_rescale_read_from_the_header() -> None:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope = "0.5"
    ds.RescaleIntercept = "-100"
    info = info_from_dataset(ds)
    assert (info.slope, info.intercept) == (0.5, -100.0)
    values = modality_values(Image(np.array([[0, 200, 201]], np.uint16), info))
    np.testing.assert_array_equal(values, [[-100, 0, 0.5]])  # fractions kept, not truncated


def test_fractional_rescale_is_windowed_as_a_real_value() -> None:
    image = grey(np.arange(4096, dtype=np.uint16).reshape(64, 64), slope=0.01)
    out = render(image, Window(20, 40))
    assert len(np.unique(out)) == 256  # 0..40.95 spread over all grey levels, not 41 steps


def test_modality_lut_sequence() -> None:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    item = lut_item([4, 10, 16], [100, 200, 300, 400])
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = [item]
    info = info_from_dataset(roundtrip(ds))
    assert info.modality_lut is not None
    image = Image(np.array([[0, 9, 10, 11, 12, 13, 14, 5000]], np.uint16), info)
    # Below the first value mapped: the first entry; past the end: the last entry.
    np.testing.assert_array_equal(
        modality_values(image), [[100, 100, 100, 200, 300, 400, 400, 400]]
    )
    assert render(image, Window(250.5, 2)).tolist() == [[0, 0, 0, 0, 255, 255, 255, 255]]


def test_rescale_takes_precedence_over_a_modality_lut_sequence() -> None:
    ds = Dataset()
    ds.ModalityLUTSequence = [lut_item([2, 0, 16], [1000, 2000])]
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "-1024"
    info = info_from_dataset(ds)
    assert info.modality_lut is None and info.intercept == -1024.0


def test_modality_lut_with_signed_first_value_written_as_us() -> None:
    # -2048 written as US 63488 (a common encoding error) for signed stored values.
    ds = Dataset()
    ds.ModalityLUTSequence = [lut_item([3, 63488, 16], [10, 20, 30])]
    info = info_from_dataset(ds)
    image = Image(np.array([[-3000, -2048, -2047, -2046, 0]], np.int16), info)
    np.testing.assert_array_equal(modality_values(image), [[10, 10, 20, 30, 30]])


def test_modality_lut_of_12_bit_entries_in_ow_big_endian() -> None:
    # pydicom's apply_modality_lut cannot do either: no 'uint12', and OW outside its dataset.
    ds = Dataset()
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4, 0, 12])
    item.add_new("LUTData", "OW", np.array([0, 100, 2000, 4095], ">u2").tobytes())
    ds.ModalityLUTSequence = [item]
    info = info_from_dataset(roundtrip(ds, ExplicitVRBigEndian))
    image = Image(np.array([[0, 1, 2, 3]], np.uint16), info)
    np.testing.assert_array_equal(modality_values(image), [[0, 100, 2000, 4095]])


# --- VOI LUT sequence -----------------------------------------------------------------------


def test_voi_lut_sequence_16_bit() -> None:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.VOILUTSequence = [lut_item([4, 100, 16], [0, 65535, 32768, 13107])]
    info = info_from_dataset(roundtrip(ds))
    assert info.voi_lut is not None
    image = Image(np.array([[0, 100, 101, 102, 103, 9999]], np.uint16), info)
    assert render(image).tolist() == [[0, 0, 255, 128, 51, 51]]


def test_voi_lut_output_range_comes_from_the_descriptor_bits() -> None:
    ds = Dataset()
    ds.VOILUTSequence = [lut_item([3, 0, 16], [0, 1000, 4095])]  # 16 bits, data below 4096
    image = Image(np.array([[0, 1, 2]], np.uint16), info_from_dataset(ds))
    assert render(image).tolist() == [[0, 4, 16]]


def test_voi_lut_8_bit_with_4096_entries_does_not_wrap() -> None:
    # pydicom's apply_voi indexes through a uint8 array here: input 300 would read entry 44.
    ds = Dataset()
    ds.VOILUTSequence = [lut_item([4096, 0, 8], [min(255, i // 16) for i in range(4096)])]
    image = Image(np.array([[0, 300, 1000, 4095, 5000]], np.uint16), info_from_dataset(ds))
    assert render(image).tolist() == [[0, 18, 62, 255, 255]]


def test_voi_lut_applies_after_rescale_and_before_monochrome1_inversion() -> None:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.RescaleIntercept = "-10"
    ds.RescaleSlope = "1"
    ds.VOILUTSequence = [lut_item([3, 0, 8], [0, 100, 255])]
    image = Image(np.array([[10, 11, 12]], np.uint16), info_from_dataset(ds))
    assert render(image).tolist() == [[255, 155, 0]]


def test_voi_lut_of_8_bit_entries_packed_in_ow() -> None:
    ds = Dataset()
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4, 0, 8])
    item.add_new("LUTData", "OW", bytes([0, 50, 200, 255]))  # one byte per entry
    ds.VOILUTSequence = [item]
    image = Image(np.array([[0, 1, 2, 3]], np.uint8), info_from_dataset(roundtrip(ds)))
    assert render(image).tolist() == [[0, 50, 200, 255]]


def test_broken_lut_sequences_are_skipped() -> None:
    ds = Dataset()
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "0"
    ds.WindowWidth = "100"
    bad = Dataset()
    bad.add_new("LUTDescriptor", "US", [4, 0])  # two values instead of three, and no data
    ds.VOILUTSequence = [bad]
    ds.ModalityLUTSequence = [bad]
    info = info_from_dataset(roundtrip(ds))
    assert info.voi_lut is None and info.modality_lut is None
    image = Image(np.array([[0, 1024, 2048]], np.uint16), info)
    assert render(image).tolist() == [[0, 129, 255]]


def test_explicit_window_overrides_the_voi_lut() -> None:
    ds = Dataset()
    ds.VOILUTSequence = [lut_item([2, 0, 8], [255, 0])]  # an inverting LUT
    image = Image(np.array([[0, 1]], np.uint16), info_from_dataset(ds))
    assert render(image).tolist() == [[255, 0]]
    assert render(image, Window(0.5, 1)).tolist() == [[0, 255]]


# --- header windows, MONOCHROME1, functional groups -----------------------------------------


def test_first_of_several_header_windows_is_used() -> None:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
    info = info_from_dataset(roundtrip(ds))
    assert info.windows == (Window(40, 400, "SOFT TISSUE"), Window(-600, 1500, "LUNG"))
    image = Image(np.array([[-160, 39, 40, 239, 240]], np.int16), info)
    assert default_window(image) == Window(40, 400, "SOFT TISSUE")
    assert render(image).tolist() == render(image, Window(40, 400)).tolist()
    assert render(image).tolist() == [[0, 127, 128, 255, 255]]


def test_single_header_window_and_voi_function() -> None:
    ds = Dataset()
    ds.WindowCenter = "50"
    ds.WindowWidth = "100"
    ds.VOILUTFunction = "LINEAR_EXACT"
    info = info_from_dataset(roundtrip(ds))
    assert info.windows == (Window(50, 100, "header"),)
    assert info.voi_function == "LINEAR_EXACT"
    assert render(Image(np.array([[0, 50, 100]], np.uint16), info)).tolist() == [[0, 128, 255]]


def test_monochrome1_is_inverted() -> None:
    pixels = np.array([[0, 100, 200, 300, 400]], np.uint16)
    mono2 = render(grey(pixels), Window(200, 401))
    mono1 = render(grey(pixels, photometric="MONOCHROME1"), Window(200, 401))
    assert mono2.tolist() == [[0, 64, 128, 192, 255]]
    np.testing.assert_array_equal(mono1, 255 - mono2)
    # With the header's photometric read by info_from_dataset and the auto window too.
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME1"
    auto = render(Image(pixels, info_from_dataset(ds)))
    assert auto[0, 0] == 255 and auto[0, -1] == 0


def _enhanced(frames: int) -> Dataset:
    """Enhanced multi-frame header: per-frame rescale and window, with a shared fallback."""
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    shared = Dataset()
    shared_voi = Dataset()
    shared_voi.WindowCenter = "1000"
    shared_voi.WindowWidth = "2000"
    shared.FrameVOILUTSequence = [shared_voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = []
    for k in range(frames):
        group = Dataset()
        rescale = Dataset()
        rescale.RescaleSlope = str(k + 1)
        rescale.RescaleIntercept = str(-100 * k)
        group.PixelValueTransformationSequence = [rescale]
        if k != 1:  # frame 2 takes the shared window
            voi = Dataset()
            voi.WindowCenter = str(10 * k)
            voi.WindowWidth = str(20 + k)
            voi.VOILUTFunction = "SIGMOID" if k == 2 else "LINEAR"
            group.FrameVOILUTSequence = [voi]
        ds.PerFrameFunctionalGroupsSequence.append(group)
    return roundtrip(ds)


def test_enhanced_multiframe_per_frame_rescale_and_window() -> None:
    ds = _enhanced(3)
    first, second, third = (info_from_dataset(ds, k) for k in range(3))
    assert (first.slope, first.intercept, first.windows) == (1.0, 0.0, (Window(0, 20, "header"),))
    assert (second.slope, second.intercept) == (2.0, -100.0)
    assert second.windows == (Window(1000, 2000, "header"),)  # shared fallback
    assert (third.slope, third.intercept) == (3.0, -200.0)
    assert third.windows == (Window(20, 22, "header"),)
    assert third.voi_function == "SIGMOID"
    pixels = np.array([[60, 70, 80]], np.uint16)  # frame 3: -20, 10, 40
    expected = apply_window(np.array([[-20.0, 10, 40]]), Window(20, 22), "SIGMOID")
    assert expected.tolist() == [[0, 36, 248]]
    np.testing.assert_array_equal(render(Image(pixels, third)), expected)


def test_shared_functional_groups_alone() -> None:
    ds = Dataset()
    shared = Dataset()
    rescale = Dataset()
    rescale.RescaleSlope = "1"
    rescale.RescaleIntercept = "-1024"
    shared.PixelValueTransformationSequence = [rescale]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [Dataset(), Dataset()]
    info = info_from_dataset(roundtrip(ds), 1)
    assert (info.slope, info.intercept, info.windows) == (1.0, -1024.0, ())


def test_header_windows_narrower_than_1_are_dropped() -> None:
    ds = Dataset()
    ds.WindowCenter = ["40", "50"]
    ds.WindowWidth = ["0", "100"]  # width 0 is not a LINEAR window
    info = info_from_dataset(ds)
    assert info.windows == (Window(50, 100, "header"),)


# --- automatic window, presets, colour, orientation -----------------------------------------


def test_auto_window_ignores_a_few_extreme_outliers() -> None:
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1000, size=(200, 200)).astype(np.float32)
    values[0, :10] = 1e7  # hot pixels
    values[1, :10] = -1e7
    window = auto_window(values)
    assert -10 <= window.low <= 20 and 980 <= window.high <= 1010
    assert window.name == "auto"
    image = grey(values)
    assert default_window(image) == window
    out = render(image)  # no header window: the auto window
    assert out[0, 0] == 255 and out[1, 0] == 0
    assert out[2:].std() > 60  # the body is spread over the grey range, not squashed to mid grey


def test_auto_window_of_a_flat_image() -> None:
    window = auto_window(np.full((8, 8), 7.0, np.float32))
    assert window.width >= 1 and window.low <= 7 <= window.high
    render(grey(np.full((8, 8), 7, np.uint16)))


def test_presets() -> None:
    for name in ("lung", "mediastinum", "bone", "brain", "abdomen"):
        preset = PRESETS[name]
        assert isinstance(preset, Window) and preset.name == name and preset.width >= 1
    assert PRESETS["lung"].center < -300 and PRESETS["lung"].width >= 1000
    assert PRESETS["bone"].center > 200 and PRESETS["bone"].width >= 1000
    assert PRESETS["brain"].width <= 100 and 20 <= PRESETS["brain"].center <= 50
    assert -50 <= PRESETS["mediastinum"].center <= 100
    assert -50 <= PRESETS["abdomen"].center <= 100


def test_rgb_passes_through_as_uint8() -> None:
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    image = Image(rgb, DisplayInfo(photometric="RGB", slope=2.0, intercept=5.0))
    out = render(image, Window(0, 10))  # neither window nor rescale touch colour
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    rgb16 = (rgb.astype(np.uint16) * 257).astype(np.uint16)
    np.testing.assert_array_equal(render(Image(rgb16, DisplayInfo(photometric="RGB"))), rgb)


def test_palette_and_ybr_headers_are_shown_as_rgb() -> None:
    for photometric in ("YBR_FULL_422", "PALETTE COLOR"):
        ds = Dataset()
        ds.PhotometricInterpretation = photometric
        assert info_from_dataset(ds).photometric == "RGB"


def _corner_pixels() -> np.ndarray:
    pixels = np.zeros((4, 6), np.uint16)
    pixels[0, 5] = 1000  # top right only
    return pixels


@pytest.mark.parametrize(
    ("info", "window", "hot"),
    [
        (DisplayInfo(), Window(500, 100), 255),
        (DisplayInfo(), None, 255),  # auto window
        (DisplayInfo(photometric="MONOCHROME1"), Window(500, 100), 0),
        (DisplayInfo(slope=2.0, intercept=-1000.0), Window(500, 100), 255),
        (DisplayInfo(windows=(Window(500, 100),)), None, 255),
        (DisplayInfo(voi_function="SIGMOID"), Window(500, 100), 255),
    ],
    ids=["window", "auto", "monochrome1", "rescale", "header-window", "sigmoid"],
)
def test_render_never_flips_or_transposes(
    info: DisplayInfo, window: Window | None, hot: int
) -> None:
    out = render(Image(_corner_pixels(), info), window)
    assert out.shape == (4, 6)
    assert out[0, 5] == hot
    rest = np.delete(out.ravel(), 5)
    assert np.all(rest == rest[0]) and rest[0] != hot


def test_render_never_flips_with_lut_sequences_or_colour() -> None:
    ds = Dataset()
    ds.ModalityLUTSequence = [lut_item([1001, 0, 16], [0] * 1000 + [4000])]
    ds.VOILUTSequence = [lut_item([2, 0, 8], [0, 255])]
    info = info_from_dataset(ds)
    out = render(Image(_corner_pixels(), info))
    assert out.shape == (4, 6) and out[0, 5] == 255 and out.sum() == 255
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[0, 5] = (255, 128, 1)
    out = render(Image(rgb, DisplayInfo(photometric="RGB")))
    assert out.shape == (4, 6, 3) and out[0, 5].tolist() == [255, 128, 1] and out.sum() == 384
