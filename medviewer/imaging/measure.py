"""Measurements on images and label maps: ruler length, ROI statistics, class areas and volumes.

Units. Lengths and areas are in mm / mm^2 from Pixel Spacing (row spacing, column spacing,
which may differ); an image without it is measured in pixels, and the result says so in its
`note`. ROI statistics are in modality units: the stored values through the modality LUT
(`display.modality_values`, the same rescale slope/intercept or LUT the viewer applies), i.e.
Hounsfield units for CT. Volumes are in mL from the voxel volume of `reslice.VolumeAxes`:
slice spacing from the slices' positions (not Slice Thickness), exact for tilted grids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medviewer.imaging.display import Image, modality_values
from medviewer.imaging.reslice import VolumeAxes

Spacing = tuple[float, float]  # (between rows, between columns) in mm
NO_SPACING = "no Pixel Spacing in the image: measured in pixels"


class MeasureError(ValueError):
    """A measurement asked of what cannot give it: says what and why."""


@dataclass(frozen=True)
class Length:
    value: float
    unit: Literal["mm", "px"]
    note: str = ""


@dataclass(frozen=True)
class RoiStats:
    """Statistics of the pixels whose centres lie in the ROI, in `unit`."""

    mean: float
    sd: float  # population standard deviation
    min: float
    max: float
    pixels: int
    area: float  # pixels times one pixel's area
    area_unit: Literal["mm2", "px"]
    unit: str  # "HU" for CT, else "" (the modality's own values)
    note: str = ""


def check_spacing(spacing: Spacing | None) -> Spacing | None:
    """Two finite spacings > 0 mm, or None for an image that has none."""
    if spacing is None:
        return None
    if len(spacing) != 2 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise MeasureError(f"pixel spacing must be two values > 0 mm, got {spacing}")
    return (float(spacing[0]), float(spacing[1]))


def ruler(start: tuple[float, float], end: tuple[float, float], spacing: Spacing | None) -> Length:
    """The distance between two (y, x) points: mm when the image has Pixel Spacing."""
    dy, dx = float(end[0]) - float(start[0]), float(end[1]) - float(start[1])
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise MeasureError(f"ruler ends must be finite, got {start} and {end}")
    sp = check_spacing(spacing)
    if sp is None:
        return Length(math.hypot(dy, dx), "px", NO_SPACING)
    return Length(math.hypot(dy * sp[0], dx * sp[1]), "mm")


def roi_mask(
    shape: tuple[int, int],
    box: tuple[float, float, float, float],
    kind: Literal["ellipse", "rectangle"],
) -> tuple[int, int, np.ndarray]:
    """The pixels whose centres lie in the rectangle (y0, x0, y1, x1), corners included in
    any order, or in the ellipse inscribed in it; as (y0, x0, boolean array), clipped."""
    if kind not in ("ellipse", "rectangle"):
        raise MeasureError(f"an ROI is an ellipse or a rectangle, not {kind!r}")
    if not all(math.isfinite(v) for v in box):
        raise MeasureError(f"ROI corners must be finite, got {box}")
    top, bottom = sorted((float(box[0]), float(box[2])))
    left, right = sorted((float(box[1]), float(box[3])))
    y0, x0 = max(math.ceil(top), 0), max(math.ceil(left), 0)
    y1, x1 = min(math.floor(bottom) + 1, shape[0]), min(math.floor(right) + 1, shape[1])
    if y0 >= y1 or x0 >= x1:
        return y0, x0, np.zeros((0, 0), bool)
    if kind == "rectangle":
        return y0, x0, np.ones((y1 - y0, x1 - x0), bool)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    ry, rx = (bottom - top) / 2, (right - left) / 2
    if ry == 0 or rx == 0:  # a flat ellipse: its centre line
        return y0, x0, np.ones((y1 - y0, x1 - x0), bool)
    yy = (np.arange(y0, y1, dtype=np.float64)[:, None] - cy) / ry
    xx = (np.arange(x0, x1, dtype=np.float64)[None, :] - cx) / rx
    return y0, x0, yy * yy + xx * xx <= 1.0 + 1e-9


def roi_stats(
    image: Image,
    box: tuple[float, float, float, float],
    kind: Literal["ellipse", "rectangle"] = "ellipse",
    modality: str = "",
) -> RoiStats:
    """Mean, SD, min, max, pixel count and area of an ROI on a greyscale image, in modality
    units ("HU" when `modality` is CT)."""
    if image.is_colour:
        raise MeasureError(f"{image.source or 'image'}: ROI statistics need a greyscale image")
    y0, x0, inside = roi_mask(image.pixels.shape[:2], box, kind)
    n = int(inside.sum())
    if n == 0:
        raise MeasureError(f"ROI {box} holds no pixel centre of the {image.pixels.shape} image")
    h, w = inside.shape
    # Only the ROI's box goes through the modality LUT, not the whole image.
    values = modality_values(
        Image(image.pixels[y0 : y0 + h, x0 : x0 + w], image.info, image.pixel_spacing)
    )[inside].astype(np.float64)
    sp = check_spacing(image.pixel_spacing)
    return RoiStats(
        mean=float(values.mean()),
        sd=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        pixels=n,
        area=n * (sp[0] * sp[1] if sp else 1.0),
        area_unit="mm2" if sp else "px",
        unit="HU" if modality.upper() == "CT" else "",
        note="" if sp else NO_SPACING,
    )


def _counts(labels: np.ndarray) -> dict[int, int]:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8:
        got = labels.dtype if isinstance(labels, np.ndarray) else type(labels)
        raise MeasureError(f"expected a uint8 label map, got {got}")
    counts = np.bincount(labels.ravel(), minlength=256)
    return {int(c): int(counts[c]) for c in np.flatnonzero(counts[1:]) + 1}


def class_areas(labels: np.ndarray, spacing: Spacing | None) -> tuple[dict[int, float], str]:
    """Class -> area on one (H, W) label map: mm^2, or pixels (with the note) without
    spacing. Background (0) is left out."""
    if labels.ndim != 2:
        raise MeasureError(f"class areas are of one (H, W) slice, got shape {labels.shape}")
    sp = check_spacing(spacing)
    per_pixel = sp[0] * sp[1] if sp else 1.0
    return {c: n * per_pixel for c, n in _counts(labels).items()}, "" if sp else NO_SPACING


def class_volumes(labels: np.ndarray, axes: VolumeAxes) -> dict[int, float]:
    """Class -> volume in mL over a (slices, rows, columns) label volume."""
    if labels.ndim != 3:
        raise MeasureError(f"class volumes are of a 3D label volume, got shape {labels.shape}")
    return volumes_of_counts(_counts(labels), axes)


def volumes_of_counts(counts: dict[int, int], axes: VolumeAxes) -> dict[int, float]:
    """Class -> mL from voxel counts per class (e.g. summed from each slice's stored pixel
    counts, without reading the masks); background (0) left out."""
    per_voxel = axes.voxel_mm3 / 1000.0  # mm^3 -> mL
    return {c: n * per_voxel for c, n in counts.items() if c != 0 and n > 0}


# -- measurements a clinician keeps with the image -------------------------------------


@dataclass(frozen=True)
class Reading:
    quantity: str  # "length"; an ROI's "mean", "sd", "min", "max", "area"
    value: float
    unit: str  # "mm", "mm2", "px", "HU" or "" (the modality's own values)


@dataclass(frozen=True)
class Measurement:
    """A ruler or ellipse ROI drawn on an image: its ends or box corners (y0, x0, y1, x1) in
    image pixels, and what it read when drawn."""

    kind: Literal["ruler", "ellipse"]
    points: tuple[float, float, float, float]
    readings: tuple[Reading, ...]
    note: str = ""

    @property
    def text(self) -> str:
        """'42.0 mm' or 'mean 40.1 HU  SD 3.2  min 31  max 50  area 78 mm2', as shown."""
        if self.kind == "ruler":
            r = self.readings[0]
            return f"{r.value:.1f} {r.unit}"
        by = {r.quantity: r for r in self.readings}
        unit = f" {by['mean'].unit}" if by["mean"].unit else ""
        area = by["area"]
        return (
            f"mean {by['mean'].value:.1f}{unit}  SD {by['sd'].value:.1f}  min "
            f"{by['min'].value:.0f}  max {by['max'].value:.0f}  area {area.value:.0f} "
            + ("mm\u00b2" if area.unit == "mm2" else "px")
        )


def ruler_measurement(
    start: tuple[float, float], end: tuple[float, float], spacing: Spacing | None
) -> Measurement:
    """A ruler from `start` to `end` ((y, x) pixels), its length by `ruler`."""
    length = ruler(start, end, spacing)
    points = (float(start[0]), float(start[1]), float(end[0]), float(end[1]))
    return Measurement(
        "ruler", points, (Reading("length", length.value, length.unit),), length.note
    )


def roi_measurement(
    image: Image, box: tuple[float, float, float, float], modality: str = ""
) -> Measurement:
    """An ellipse ROI inscribed in `box` (y0, x0, y1, x1), its statistics by `roi_stats`."""
    s = roi_stats(image, box, "ellipse", modality)
    readings = tuple(
        Reading(q, float(getattr(s, q)), s.unit) for q in ("mean", "sd", "min", "max")
    ) + (Reading("area", s.area, s.area_unit),)
    points = tuple(float(v) for v in box)
    return Measurement("ellipse", points, readings, s.note)  # type: ignore[arg-type]
