"""Generated phantom images with known ground truth, for the demo and the tests.

No package ships medical images together with their masks, so the demo's three AI tasks learn
from phantoms drawn here. Each generator is deterministic: the same seed (and size) gives a
bit-identical case, different seeds give different "patients". They are cheap (a few ms per
256x256 image) and realistic enough at a glance, and just hard enough that a small CNN learns
them imperfectly in seconds of CPU training.

- `chest_case`: a PA chest radiograph (12-bit MONOCHROME2 values), mask 1 = pneumothorax.
- `abdomen_case`: an axial contrast CT slice at kidney level (Hounsfield units), mask
  1 = left kidney (image right), 2 = right kidney (image left), 3 = a small renal lesion.
- `fundus_case`: an RGB fundus photograph, multi-label (diabetic retinopathy, glaucoma,
  normal), mask 1 = DR lesion pixels (haemorrhages and exudates).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

CHEST_CLASSES = ("background", "pneumothorax")
ABDOMEN_CLASSES = ("background", "left kidney", "right kidney", "lesion")
FUNDUS_LABELS = ("diabetic retinopathy", "glaucoma", "normal")

CHEST_PREVALENCE = 0.5
LESION_PREVALENCE = 0.6
DR_PREVALENCE = 0.4
GLAUCOMA_PREVALENCE = 0.3

_SHIFT = 4  # fractional bits for cv2 drawing coordinates
_ONE = 1 << _SHIFT


@dataclass
class Case:
    """One generated image with its ground truth.

    `classes` names the mask values (segmentation tasks) or the labels (classification);
    `pixel_spacing` is (row, column) in mm; `meta` holds what else is known (positions of the
    finding, side, eye, cup-to-disc ratio...).
    """

    image: np.ndarray
    mask: np.ndarray | None
    labels: dict[str, bool]
    finding: bool
    seed: int
    task: str
    classes: tuple[str, ...] = ()
    pixel_spacing: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _rng(seed: int, task: str) -> np.random.Generator:
    """A generator per (task, seed): the same seed gives unrelated cases in different tasks."""
    return np.random.default_rng([zlib.crc32(task.encode()), int(seed) & 0xFFFFFFFF])


def _pts(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates (x, y) -> int32 fixed-point array for cv2 with shift=_SHIFT."""
    return np.round(np.asarray(points, np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _chaikin(points: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Corner cutting: a smooth closed curve through a coarse polygon."""
    p = np.asarray(points, np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        new = np.empty((2 * len(p), 2))
        new[0::2] = 0.75 * p + 0.25 * q
        new[1::2] = 0.25 * p + 0.75 * q
        p = new
    return p


def _fill(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """A uint8 mask, 1 inside the polygon (x, y pixel coordinates)."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [_pts(polygon)], 1, cv2.LINE_8, _SHIFT)
    return out


def _ellipse(
    img: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
    value: float | tuple[float, ...],
    thickness: int = -1,
) -> np.ndarray:
    """Draw a filled (or outlined) ellipse with sub-pixel centre and axes, in place."""
    c = (round(center[0] * _ONE), round(center[1] * _ONE))
    ax = (max(1, round(axes[0] * _ONE)), max(1, round(axes[1] * _ONE)))
    cv2.ellipse(img, c, ax, float(angle), 0, 360, value, thickness, cv2.LINE_8, _SHIFT)
    return img


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise varying over about size/cells pixels."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    return _blur(mask.astype(np.float32), sigma)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) as float32 column and row vectors (broadcastable)."""
    r = np.arange(size, dtype=np.float32)
    return r[None, :], r[:, None]


# --------------------------------------------------------------------------------------------
# Vessel trees: lung markings on the radiograph, retinal vessels on the fundus photograph


@dataclass(frozen=True)
class _TreeStyle:
    """How a vessel tree grows: step length (px), branching, bending and tapering."""

    step: float
    branch_p: float
    spread: float
    wiggle: float
    narrow: float
    min_width: float


def _grow(
    rng: np.random.Generator,
    start: np.ndarray | tuple[float, float],
    angle: float,
    length: float,
    width: float,
    curve: float,
    style: _TreeStyle,
    depth: int = 0,
    out: list | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A branching vessel as a list of (points (n+1, 2), widths (n,)) polylines."""
    out = [] if out is None else out
    n = int(length / style.step)
    if n < 1 or width < style.min_width:
        return out
    # Plain Python per step: the branches are short, so numpy's per-call cost would dominate.
    turns = rng.normal(curve, style.wiggle, n).tolist()
    chance = style.branch_p * 0.8**depth if depth < 3 else 0.0
    events = (rng.random(n) < chance).tolist()
    x, y = float(start[0]), float(start[1])
    points, widths, forks = [(x, y)], [], []
    for i in range(n):
        if width < style.min_width:
            break
        angle += turns[i]
        x += style.step * math.cos(angle)
        y += style.step * math.sin(angle)
        points.append((x, y))
        widths.append(width)
        if events[i] and i > 0:
            forks.append((i, x, y, angle, width))
            width *= 0.85
        width *= style.narrow
    out.append((np.array(points), np.array(widths)))
    for i, fx, fy, fangle, fwidth in forks:
        side = 1 if rng.random() < 0.5 else -1
        _grow(
            rng,
            (fx, fy),
            fangle + side * style.spread * rng.uniform(0.6, 1.2),
            (length - (i + 1) * style.step) * rng.uniform(0.4, 0.8),
            fwidth * 0.8,
            curve * 0.5,
            style,
            depth + 1,
            out,
        )
    return out


def _draw_branches(canvas: np.ndarray, branches: list, value: float = 255) -> np.ndarray:
    """Draw _grow's polylines in place: one-pixel centre lines per rounded width, each set
    then dilated to its width (much faster than cv2's thick lines)."""
    runs: dict[int, list[np.ndarray]] = {}
    for pts, widths in branches:
        thick = np.maximum(1, np.rint(widths)).astype(int)
        fixed = _pts(pts)
        begin = 0
        for end in [*(np.nonzero(np.diff(thick))[0] + 1), len(thick)]:
            runs.setdefault(int(thick[begin]), []).append(fixed[begin : end + 1])
            begin = end
    for width, lines in sorted(runs.items()):
        layer = np.zeros_like(canvas)
        cv2.polylines(layer, lines, False, value, 1, cv2.LINE_8, _SHIFT)
        if width > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
            layer = cv2.dilate(layer, kernel)
        np.maximum(canvas, layer, out=canvas)
    return canvas


# --------------------------------------------------------------------------------------------
# Chest radiograph


def chest_case(seed: int, size: int = 256) -> Case:
    """A PA chest radiograph phantom, 12-bit MONOCHROME2 (uint16 0..4095).

    Patient's right is on the image's left. In about half the cases (decided by the seed) one
    lung has a pneumothorax: an apical/lateral crescent of pleural air between the chest wall
    and the retracted lung, darker and without lung markings (ribs still cross it), with a thin
    visceral pleural line at its inner edge. The mask is 1 on that crescent.
    """
    rng = _rng(seed, "chest")
    finding = bool(rng.random() < CHEST_PREVALENCE)
    s = size
    k = s / 256.0
    # The patient: position, size and build.
    cx = 0.5 + rng.normal(0.0, 0.012)
    w = rng.uniform(0.9, 1.04)  # chest width
    h = rng.uniform(0.92, 1.05)  # lung height
    top = rng.uniform(0.1, 0.15)

    def px(points: list | np.ndarray) -> np.ndarray:
        """Template coordinates (0..1, lung apex near v=0.12) -> this patient's pixels."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        return np.stack([(cx + (p[:, 0] - 0.5) * w) * s, (top + (p[:, 1] - 0.12) * h) * s], 1)

    def pt(u: float, v: float) -> tuple[float, float]:
        q = px([u, v])[0]
        return (float(q[0]), float(q[1]))

    x, y = _grid(s)
    # X-ray attenuation, added up along the beam: soft tissue, minus lung air, plus bone.
    # Body: an elliptic cylinder seen side on, so its thickness falls off to the edges.
    body_poly = px(
        [
            [0.42, -0.2], [0.58, -0.2], [0.60, 0.02], [0.72, 0.06], [0.92, 0.1], [0.97, 0.2],
            [0.96, 0.5], [0.95, 1.3], [0.05, 1.3], [0.04, 0.5], [0.03, 0.2], [0.08, 0.1],
            [0.28, 0.06], [0.40, 0.02],
        ]
    )  # fmt: skip
    body = _soft(_fill((s, s), _chaikin(body_poly, 2)), 1.5 * k)
    depth_x = np.sqrt(np.clip(1.0 - ((x / s - cx) / (0.49 * w)) ** 2, 0.0, 1.0))
    atten = body * (0.3 + 0.7 * depth_x)

    # Lungs, patient's right (image left) then left, with the heart's notch on the left lung.
    right = [
        [0.33, 0.12], [0.24, 0.16], [0.16, 0.28], [0.13, 0.45], [0.13, 0.62], [0.15, 0.76],
        [0.17, 0.81], [0.23, 0.77], [0.32, 0.71], [0.41, 0.69], [0.44, 0.70], [0.45, 0.55],
        [0.44, 0.40], [0.42, 0.24], [0.39, 0.15],
    ]  # fmt: skip
    left = [
        [0.67, 0.12], [0.76, 0.16], [0.84, 0.28], [0.87, 0.45], [0.87, 0.62], [0.855, 0.78],
        [0.835, 0.83], [0.78, 0.80], [0.70, 0.77], [0.64, 0.75], [0.60, 0.67], [0.57, 0.55],
        [0.555, 0.40], [0.57, 0.24], [0.61, 0.15],
    ]  # fmt: skip
    lungs_bin = []
    for poly in (right, left):
        p = np.asarray(poly, np.float64) + rng.normal(0.0, 0.006, (len(poly), 2))
        lungs_bin.append(_fill((s, s), _chaikin(px(p), 3)))
    # The pneumothorax: the lung retracts towards its hilum and base (scaled about a medial
    # basal point), leaving an apical and lateral crescent of pleural air.
    ptx = np.zeros((s, s), np.uint8)
    line = np.zeros((s, s), np.uint8)
    meta: dict[str, Any] = {"side": None}
    if finding:
        side = int(rng.integers(2))  # 0: patient's right (image left), 1: left
        lung = lungs_bin[side]
        ys, xs = np.nonzero(lung)
        anchor_x = float(xs.max() if side == 0 else xs.min())
        anchor_y = float(ys.max())
        sx, sy = rng.uniform(0.7, 0.94), rng.uniform(0.76, 0.95)
        m = np.float32([[sx, 0, (1 - sx) * anchor_x], [0, sy, (1 - sy) * anchor_y]])
        collapsed = cv2.warpAffine(lung, m, (s, s), flags=cv2.INTER_NEAREST) & lung
        ptx = lung & (1 - collapsed)
        ptx = cv2.morphologyEx(ptx, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(ptx, connectivity=4)
        if n > 2:  # one crescent: drop slivers along the base
            ptx = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        edge = collapsed - cv2.erode(collapsed, np.ones((3, 3), np.uint8))
        line = edge & cv2.dilate(ptx, np.ones((3, 3), np.uint8))
        meta = {"side": "right" if side == 0 else "left", "scale": (float(sx), float(sy))}

    heart = np.zeros((s, s), np.uint8)
    hw = 0.155 * w * s * rng.uniform(0.92, 1.1)
    _ellipse(heart, pt(0.55 + rng.normal(0, 0.008), 0.655), (hw, 0.12 * h * s), -12, 1)
    _ellipse(heart, pt(0.565, 0.31), (0.04 * w * s, 0.035 * h * s), 0, 1)  # aortic knob
    _ellipse(heart, pt(0.5, 0.38), (0.055 * w * s, 0.22 * h * s), 0, 1)  # mediastinum
    heart_soft = _soft(heart, 3.0 * k)
    # Below the hemidiaphragms (the right one higher): liver and abdomen, as dense as heart.
    domes = [
        [0.02, 0.86], [0.12, 0.8], [0.2, 0.75], [0.3, 0.705], [0.42, 0.695], [0.5, 0.72],
        [0.6, 0.75], [0.72, 0.765], [0.8, 0.78], [0.88, 0.83], [0.98, 0.9], [0.98, 1.4],
        [0.02, 1.4],
    ]  # fmt: skip
    below = _soft(_fill((s, s), _chaikin(px(domes), 2)), 2.5 * k)

    lung_any = lungs_bin[0] | lungs_bin[1]
    dist = cv2.distanceTransform(lung_any, cv2.DIST_L2, 3)
    lung_depth = np.sqrt(np.minimum(dist * (1 / (0.06 * s)), 1.0)) * (1.0 - 0.55 * heart_soft)
    ptx_soft = _soft(ptx, 0.7 * k)
    if finding:  # pleural air right up to the chest wall: no thin lung edge there
        lung_depth = np.maximum(lung_depth, 0.85 * ptx_soft)
    lung_soft = _soft(lung_any, 1.0 * k)
    atten -= 0.62 * lung_depth * lung_soft
    atten += 0.32 * np.maximum(heart_soft, below)

    # Lung markings: vessels branching out from the hila, fading towards the periphery.
    vessels = np.zeros((s, s), np.uint8)
    style = _TreeStyle(0.02 * s, 0.25, 0.5, 0.12, 0.93, 0.9)
    hila, trees = [], []
    for sgn, hx in ((-1, 0.405), (1, 0.595)):
        hilum = px([hx, 0.44])[0]
        hila.append(hilum)
        for _ in range(12):
            a = math.pi / 2 - sgn * rng.uniform(0.08, 0.95) * math.pi
            trees += _grow(rng, hilum, a, rng.uniform(0.2, 0.34) * s, 3.4 * k, 0.0, style)
    _draw_branches(vessels, trees)
    # Distance to the nearer hilum, computed coarse and enlarged (it varies slowly).
    lo = np.arange(32, dtype=np.float32) * np.float32(s / 32) + np.float32(s / 64)
    d_lo = np.minimum(*(np.hypot(lo[None, :] - hx_, lo[:, None] - hy_) for hx_, hy_ in hila))
    d_hilum = cv2.resize(d_lo * np.float32(1 / s), (s, s), interpolation=cv2.INTER_LINEAR)
    markings = _blur(vessels.astype(np.float32), 0.8 * k) * (np.exp(-d_hilum / 0.16) / 255.0)
    hilar = np.exp(-((d_hilum / 0.045) ** 2))
    texture = _smooth_noise(rng, s, 28)
    keep = 1.0 - ptx_soft
    atten += (0.3 * markings + 0.12 * hilar + 0.025 * texture) * lung_soft * keep
    if finding:
        atten -= 0.08 * ptx_soft
        atten += 0.16 * _soft(line, 0.5 * k)

    # Spine (vertebrae, faint through the mediastinum) and a gastric bubble under the left
    # hemidiaphragm.
    spine = np.clip(1.0 - (np.abs(x - cx * s) / (0.048 * w * s)) ** 4, 0.0, 1.0)
    vert = 0.75 + 0.25 * np.cos(math.pi * (y / s - top) / (0.05 * h)) ** 2
    atten += 0.2 * spine * vert * body
    bubble = _ellipse(np.zeros((s, s), np.uint8), pt(0.66, 0.87), (0.05 * s, 0.028 * s), 0, 1)
    atten -= 0.2 * _soft(bubble, 2 * k) * rng.uniform(0.2, 1.0)

    # Bones: posterior ribs sloping down laterally, fainter anterior arcs, clavicles.
    bones = np.zeros((s, s), np.uint8)
    for sgn in (-1, 1):
        for i in range(10):
            v0 = 0.11 + 0.056 * i + rng.normal(0, 0.003)
            t = np.linspace(0.0, 1.0, 10)
            post = np.stack([0.5 + sgn * (0.035 + 0.36 * t**0.8), v0 - 0.025 * t + 0.13 * t**2], 1)
            t2 = np.linspace(0.0, 1.0, 8)
            ant = np.stack([post[-1, 0] - sgn * 0.25 * t2**0.9, post[-1, 1] + 0.09 * t2**1.3], 1)
            thick = max(1, round((3.6 + 0.25 * i) * k))
            cv2.polylines(bones, [_pts(px(post))], False, 255, thick, cv2.LINE_8, _SHIFT)
            cv2.polylines(bones, [_pts(px(ant))], False, 110, max(1, thick - 1), 8, _SHIFT)
        clav = np.array(
            [[0.5 + sgn * 0.04, 0.14], [0.5 + sgn * 0.18, 0.115], [0.5 + sgn * 0.33, 0.08]]
        )
        cv2.polylines(bones, [_pts(px(clav))], False, 255, round(6 * k), cv2.LINE_8, _SHIFT)
    bone = _blur(bones.astype(np.float32), 0.9 * k) / 255.0
    atten += 0.15 * bone * body

    # Exposure: compressive response, slight unsharpness, quantum noise; 12 bits.
    out = 1.0 - np.exp(-1.25 * np.clip(atten, 0.0, None))
    out = _blur(out.astype(np.float32), 0.7 * k)
    out = 200.0 + 3700.0 * out + rng.standard_normal((s, s), dtype=np.float32) * 22.0
    image = np.clip(np.rint(out), 0, 4095).astype(np.uint16)
    meta["pneumothorax_pixels"] = int(ptx.sum())
    spacing = 400.0 / s  # a 40 cm detector
    return Case(
        image=image,
        mask=ptx,
        labels={"pneumothorax": finding},
        finding=finding,
        seed=seed,
        task="chest",
        classes=CHEST_CLASSES,
        pixel_spacing=(spacing, spacing),
        meta=meta,
    )


# --------------------------------------------------------------------------------------------
# Abdominal CT


def abdomen_case(seed: int, size: int = 256) -> Case:
    """An axial contrast-enhanced CT slice at kidney level, in Hounsfield units (int16).

    Viewed from the feet, as CT is shown: the patient's left is on the image's right, anterior
    at the top. Mask: 1 left kidney (image right), 2 right kidney (image left), 3 a small lesion
    (cyst or solid, a few dozen to ~150 pixels at 256x256) in or at the edge of one kidney, in
    about 60% of the cases.
    """
    rng = _rng(seed, "abdomen")
    finding = bool(rng.random() < LESION_PREVALENCE)
    s = size
    k = s / 256.0
    hu = np.full((s, s), -1000.0, np.float32)
    mask = np.zeros((s, s), np.uint8)

    cx = (0.5 + rng.normal(0, 0.01)) * s
    cy = (0.47 + rng.normal(0, 0.01)) * s
    bw = rng.uniform(0.37, 0.44) * s  # body half width
    bh = rng.uniform(0.26, 0.31) * s  # body half height (antero-posterior)
    # The table: a shallow cradle under the patient's back.
    tx = np.linspace(cx - 0.5 * s, cx + 0.5 * s, 25)
    ty = cy + bh + 3 * k - 0.05 * s * ((tx - cx) / (0.5 * s)) ** 2
    for dy, value in ((0.0, 60.0), (0.045 * s, 150.0)):
        table = _pts(np.stack([tx, ty + dy], 1))
        cv2.polylines(hu, [table], False, value, max(1, round(2 * k)), cv2.LINE_8, _SHIFT)

    # Body outline (flatter at the back); subcutaneous fat, muscle wall, abdominal cavity fat.
    theta = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    wobble = 1 + 0.02 * np.sin(3 * theta + rng.uniform(0, 6)) + 0.015 * np.sin(5 * theta)
    flat = np.where(np.sin(theta) > 0, 1 - 0.1 * np.sin(theta) ** 8, 1.0)
    centre = np.array([cx, cy])
    outline = centre + np.stack(
        [bw * wobble * np.cos(theta), bh * wobble * flat * np.sin(theta)], 1
    )
    body = _fill((s, s), outline)
    hu[body > 0] = -105.0
    fat = rng.uniform(0.05, 0.12)
    hu[_fill((s, s), centre + (outline - centre) * (1 - fat)) > 0] = 45.0
    hu[_fill((s, s), centre + (outline - centre) * (1 - fat - 0.03)) > 0] = -90.0

    def at(u: float, v: float) -> tuple[float, float]:
        """Body-relative position: u, v in -1..1 across the body's half width and height."""
        return (cx + u * bw, cy + v * bh)

    vc = at(rng.normal(0, 0.01), 0.28)  # vertebral body centre
    vr = 0.055 * s
    # Liver tip (patient's right: image left) and spleen tip, then bowel and colon.
    _ellipse(hu, at(-0.62, -0.1), (0.14 * s, 0.15 * s), 20, 100.0)
    if rng.random() < 0.6:
        _ellipse(hu, at(0.68, 0.2), (0.06 * s, 0.045 * s), -50, 110.0)
    for _ in range(int(rng.integers(8, 13))):
        c = at(rng.uniform(-0.55, 0.55), rng.uniform(-0.75, 0.0))
        r = rng.uniform(0.04, 0.08) * s
        ang = rng.uniform(0, 180)
        _ellipse(hu, c, (r, r * rng.uniform(0.6, 1.0)), ang, 35.0)
        kind = rng.random()
        if kind < 0.25:
            _ellipse(hu, c, (r * 0.55, r * 0.4), ang, -950.0)
        elif kind < 0.45:
            _ellipse(hu, c, (r * 0.6, r * 0.5), ang, 230.0)
    for u in (-0.7, 0.72):  # ascending and descending colon: gas and stool
        c = at(u + rng.normal(0, 0.03), rng.uniform(-0.15, 0.1))
        r = rng.uniform(0.035, 0.05) * s
        _ellipse(hu, c, (r, r), 0, 30.0)
        _ellipse(hu, c, (r * 0.8, r * 0.8), 0, -900.0 if rng.random() < 0.6 else -150.0)

    # Spine: vertebral body (cortex ~700, marrow ~250), canal, posterior arch; muscles.
    vx, vy = vc
    for u in (-1, 1):
        psoas = (0.03 * s * rng.uniform(0.9, 1.2), 0.04 * s)
        _ellipse(hu, (vx + u * 0.08 * s, vy + 0.005 * s), psoas, -u * 20, 50.0)
        _ellipse(hu, (vx + u * 0.07 * s, vy + 0.115 * s), (0.065 * s, 0.055 * s), u * 15, 52.0)
        _ellipse(hu, (vx + u * 0.14 * s, vy + 0.085 * s), (0.04 * s, 0.022 * s), u * 40, 50.0)
        cv2.line(
            hu,
            (round(vx), round(vy + 0.075 * s)),
            (round(vx + u * 0.055 * s), round(vy + 0.09 * s)),
            650.0,
            max(1, round(4 * k)),
        )
    _ellipse(hu, (vx, vy + 0.07 * s), (0.04 * s, 0.04 * s), 0, 650.0)
    _ellipse(hu, (vx, vy + 0.07 * s), (0.021 * s, 0.019 * s), 0, 15.0)  # spinal canal
    cv2.line(hu, (round(vx), round(vy + 0.1 * s)), (round(vx), round(vy + 0.16 * s)),
             650.0, max(1, round(5 * k)))  # fmt: skip
    _ellipse(hu, vc, (vr, vr * 0.85), 0, 700.0)
    _ellipse(hu, vc, (vr - 2.2 * k, vr * 0.85 - 2.2 * k), 0, 240.0)
    # Aorta (left of the midline: image right), IVC (image left), mesenteric vessels.
    _ellipse(hu, (vx + 0.03 * s, vy - vr - 0.035 * s), (0.03 * s, 0.03 * s), 0, 190.0)
    _ellipse(hu, (vx - 0.065 * s, vy - vr - 0.03 * s), (0.038 * s, 0.026 * s), 0, 130.0)
    _ellipse(hu, (vx + 0.025 * s, vy - vr - 0.1 * s), (0.01 * s, 0.01 * s), 0, 180.0)
    _ellipse(hu, (vx - 0.005 * s, vy - vr - 0.1 * s), (0.014 * s, 0.013 * s), 0, 140.0)

    # Kidneys: bean-shaped, lateral to the psoas, hilum facing anteromedially.
    kidneys = {}
    for label, sgn in ((1, 1), (2, -1)):  # 1: patient's left (image right)
        kc = np.array([vx + sgn * rng.uniform(0.19, 0.22) * s, vy + rng.uniform(-0.03, 0.02) * s])
        a, b = rng.uniform(0.045, 0.058) * s, rng.uniform(0.07, 0.088) * s
        ang = sgn * rng.uniform(25, 45)  # long axis from posteromedial to anterolateral
        t = math.radians(ang)
        u_a = np.array([math.cos(t), math.sin(t)])  # short axis
        u_b = np.array([-math.sin(t), math.cos(t)])  # long axis
        medial = -sgn * u_a  # towards the spine, and a little anterior
        kmask = _ellipse(np.zeros((s, s), np.uint8), tuple(kc), (a, b), ang, 1)
        # The hilum: a notch on the medial side holding sinus fat and the renal pelvis.
        hc = kc + medial * a * 0.9
        notch = _ellipse(np.zeros((s, s), np.uint8), tuple(hc), (a * 0.5, b * 0.38), ang, 1)
        kmask &= 1 - notch
        mask[kmask > 0] = label
        hu[kmask > 0] = rng.uniform(140, 175)  # enhancing cortex
        # Medulla: pyramids between cortex and sinus, less enhanced in this phase.
        for j in (-2, -1, 0, 1, 2):
            pc = kc + u_b * b * 0.36 * j + medial * a * (0.2 - 0.1 * abs(j))
            _ellipse(hu, tuple(pc), (a * 0.26, a * 0.19), ang + 25 * j, 80.0)
        hu[notch > 0] = -70.0  # sinus fat
        _ellipse(hu, tuple(hc + medial * a * 0.15), (a * 0.22, b * 0.15), ang, 5.0)  # pelvis
        kidneys[label] = (kc, a, b, u_a, u_b, sgn)

    meta: dict[str, Any] = {"lesion": None}
    if finding:
        label = int(rng.integers(1, 3))
        kc, a, b, u_a, u_b, sgn = kidneys[label]
        area = rng.uniform(35, 150) * k * k
        r = math.sqrt(area / math.pi)
        # In the parenchyma or bulging from the rim, on the lateral side (away from the hilum).
        phi = rng.uniform(-0.6, 0.6) * math.pi
        radial = rng.uniform(0.45, 1.0)
        lc = kc + radial * (sgn * a * math.cos(phi) * u_a + b * math.sin(phi) * u_b)
        lx, ly = float(lc[0]), float(lc[1])
        lesion = _ellipse(
            np.zeros((s, s), np.uint8), (lx, ly), (r, r * 0.9), rng.uniform(0, 180), 1
        )
        lesion &= body
        cyst = bool(rng.random() < 0.5)
        value = rng.uniform(0, 20) if cyst else rng.uniform(55, 95)
        lesion_soft = _soft(lesion, 0.6 * k)
        hu = hu * (1 - lesion_soft) + value * lesion_soft
        mask[lesion > 0] = 3
        meta["lesion"] = {
            "kidney": ABDOMEN_CLASSES[label],
            "center": (ly, lx),  # (row, column)
            "pixels": int(lesion.sum()),
            "kind": "cyst" if cyst else "solid",
            "hu": float(value),
        }

    # Scanner: partial volume blur, correlated noise.
    hu = _blur(hu, 0.6 * k)
    hu += _blur(rng.standard_normal((s, s), dtype=np.float32), 0.7 * k) * 22.0
    hu += 6.0 * _smooth_noise(rng, s, 10) * body
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    spacing = 380.0 / s  # a 38 cm field of view
    meta["slice_thickness"] = 5.0
    return Case(
        image=image,
        mask=mask,
        labels={"lesion": finding},
        finding=finding,
        seed=seed,
        task="abdomen",
        classes=ABDOMEN_CLASSES,
        pixel_spacing=(spacing, spacing),
        meta=meta,
    )


# --------------------------------------------------------------------------------------------
# Fundus photograph


def fundus_case(seed: int, size: int = 256) -> Case:
    """An RGB fundus photograph (uint8), multi-label over FUNDUS_LABELS.

    Diabetic retinopathy: scattered dark-red haemorrhages and yellow exudates around the
    posterior pole; the mask marks their pixels (1) and meta["lesions"] lists them. Glaucoma:
    a large optic cup (cup-to-disc ratio 0.65-0.85 against 0.2-0.45). Normal: neither.
    """
    rng = _rng(seed, "fundus")
    dr = bool(rng.random() < DR_PREVALENCE)
    glaucoma = bool(rng.random() < GLAUCOMA_PREVALENCE)
    s = size
    k = s / 256.0
    x, y = _grid(s)
    eye = 1 if rng.random() < 0.5 else -1  # +1: right eye (OD), disc on the image right
    c0 = s / 2
    fov_r = 0.47 * s
    rr = np.sqrt((x - c0) ** 2 + (y - c0) ** 2) * np.float32(1 / fov_r)
    inside = (rr <= 1).astype(np.uint8)

    disc = np.array([c0 + eye * rng.uniform(0.19, 0.24) * s, c0 + rng.uniform(-0.05, 0.02) * s])
    fovea = np.array([c0 - eye * rng.uniform(0.0, 0.05) * s, disc[1] + rng.uniform(0.01, 0.04) * s])
    # Brightness: darker towards the rim, mottled choroid, uneven illumination, darker macula.
    shade = 1.0 - 0.45 * np.minimum(rr, 1) ** 2
    shade *= 1 + 0.05 * _smooth_noise(rng, s, 10) + 0.025 * _smooth_noise(rng, s, 40)
    gx, gy = rng.normal(0, 0.1, 2)
    shade *= 1 + np.float32(gx / s) * (x - c0) + np.float32(gy / s) * (y - c0)
    d2 = ((x - fovea[0]) ** 2 + (y - fovea[1]) ** 2) * np.float32(1 / (0.075 * s) ** 2)
    shade *= 1 - 0.35 * np.exp(-d2 / 2)
    tint = np.array(
        [rng.uniform(0.8, 0.93), rng.uniform(0.30, 0.42), rng.uniform(0.1, 0.17)], np.float32
    )
    # Planes (3, rows, columns): per-pixel weights then broadcast cheaply over the colours.
    img = shade[None] * tint[:, None, None]

    # Optic disc and cup (the cup a little taller than wide), drawn in a box around the disc.
    rd = rng.uniform(0.06, 0.072) * s
    cdr = rng.uniform(0.65, 0.85) if glaucoma else rng.uniform(0.2, 0.45)
    top, bottom = max(0, int(disc[1] - 2 * rd)), min(s, int(disc[1] + 2 * rd) + 1)
    left, right = max(0, int(disc[0] - 2 * rd)), min(s, int(disc[0] + 2 * rd) + 1)
    bx, by = x[:, left:right], y[top:bottom]
    box = img[:, top:bottom, left:right]
    ddisc = ((bx - disc[0]) / (rd * 0.92)) ** 2 + ((by - disc[1]) / rd) ** 2
    disc_w = _blur((ddisc <= 1).astype(np.float32), 1.2 * k)
    rim = np.array([0.96, 0.56, 0.32], np.float32)[:, None, None] * rng.uniform(0.9, 1.0)
    box += disc_w * (rim - box)
    cup_r = cdr * rd
    dcup = ((bx - disc[0] - eye * 0.1 * cup_r) / (cup_r * 0.9)) ** 2 + ((by - disc[1]) / cup_r) ** 2
    cup_w = _blur((dcup <= 1).astype(np.float32), 1.5 * k)
    box += cup_w * (np.array([1.0, 0.92, 0.76], np.float32)[:, None, None] - box)

    # Vessels: superior/inferior temporal arcades curving around the macula and nasal
    # branches; in each direction a vein (wider, darker) beside an artery (narrower, lighter).
    veins = np.zeros((s, s), np.uint8)
    arteries = np.zeros((s, s), np.uint8)
    style = _TreeStyle(0.02 * s, 0.2, 0.55, 0.035, 0.985, 0.9 * k)
    temporal = math.pi if eye == 1 else 0.0
    vein_trees: list = []
    artery_trees: list = []
    for up in (-1, 1):
        start = disc + [0.0, up * 0.15 * rd]
        base = temporal - eye * up * math.radians(rng.uniform(55, 70))
        bend = eye * up * math.radians(rng.uniform(2.6, 3.4))  # around the macula
        nasal = (math.pi - temporal) + eye * up * math.radians(rng.uniform(30, 60))
        for trees, w0, off in ((vein_trees, 3.2, 0.1), (artery_trees, 2.4, -0.12)):
            tree = _grow(rng, start, base + off * up, 0.8 * s, w0 * k, bend, style)
            tree += _grow(rng, start, nasal + off, 0.4 * s, w0 * 0.8 * k, 0.0, style)
            mid = temporal + rng.normal(0, 0.3)  # small macular branches
            tree += _grow(rng, start, mid + up * 0.35, 0.2 * s, 1.4 * k, -up * 0.04, style)
            trees += tree
    _draw_branches(veins, vein_trees)
    _draw_branches(arteries, artery_trees)
    vein_w = _blur(veins.astype(np.float32), 0.6 * k) * np.float32(1 / 255)
    art_w = _blur(arteries.astype(np.float32), 0.6 * k) * np.float32(1 / 255)
    for plane, vein, artery in zip(img, (0.5, 0.1, 0.07), (0.78, 0.22, 0.12)):
        plane += vein_w * (np.float32(vein) * shade - plane)
        plane += art_w * (np.float32(artery) * shade - plane)

    # Diabetic retinopathy: haemorrhages and exudates in clusters around the posterior pole.
    lesion_mask = np.zeros((s, s), np.uint8)
    lesions: list[dict[str, Any]] = []
    if dr:
        heme = np.zeros((s, s), np.uint8)
        exud = np.zeros((s, s), np.uint8)
        centres = [fovea + rng.normal(0, 0.12 * s, 2) for _ in range(int(rng.integers(1, 4)))]
        placed: list[tuple[float, float, float]] = []  # (x, y, radius)
        for i in range(int(rng.integers(6, 22))):
            c = centres[i % len(centres)] + rng.normal(0, 0.05 * s, 2)
            if np.hypot(*(c - c0)) > 0.88 * fov_r or np.hypot(*(c - disc)) < 1.4 * rd:
                continue
            kind = "exudate" if rng.random() < 0.45 else "haemorrhage"
            r = rng.uniform(1.2, 3.2) * k
            if any(math.hypot(c[0] - qx, c[1] - qy) < r + qr + 1.5 * k for qx, qy, qr in placed):
                continue  # lesions stay apart, so each keeps its own colour
            placed.append((c[0], c[1], r))
            canvas = exud if kind == "exudate" else heme
            _ellipse(canvas, (c[0], c[1]), (r, r * rng.uniform(0.7, 1.0)), rng.uniform(0, 180), 255)
            lesions.append({"center": (float(c[1]), float(c[0])), "radius": float(r), "kind": kind})
        if not lesions:  # every lesion fell off the posterior pole: one beside the fovea
            c = fovea + [0.0, 0.08 * s]
            _ellipse(heme, (c[0], c[1]), (2.5 * k, 2.5 * k), 0, 255)
            lesions.append(
                {"center": (float(c[1]), float(c[0])), "radius": 2.5 * k, "kind": "haemorrhage"}
            )
        lesion_mask = ((heme | exud) > 0).astype(np.uint8) & inside
        hw = _blur(heme.astype(np.float32), 0.5 * k) * np.float32(1 / 255)
        ew = _blur(exud.astype(np.float32), 0.5 * k) * np.float32(1 / 255)
        for plane, red, yellow in zip(img, (0.33, 0.03, 0.02), (0.98, 0.88, 0.38)):
            plane += hw * (np.float32(red) - plane)
            plane += ew * (np.float32(yellow) - plane)

    # Camera: field stop, slight blur, noise.
    fov = _blur(inside.astype(np.float32), 1.0 * k) * np.float32(255)
    noise = rng.standard_normal((s, s), dtype=np.float32) * np.float32(0.012)
    planes = [(_blur(plane, 0.6 * k) + noise) * fov for plane in img]
    image = cv2.merge([np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes])
    normal = not dr and not glaucoma
    return Case(
        image=image,
        mask=lesion_mask,
        labels={"diabetic retinopathy": dr, "glaucoma": glaucoma, "normal": normal},
        finding=not normal,
        seed=seed,
        task="fundus",
        classes=FUNDUS_LABELS,
        pixel_spacing=None,
        meta={
            "eye": "OD" if eye == 1 else "OS",
            "disc_center": (float(disc[1]), float(disc[0])),  # (row, column)
            "disc_radius": float(rd),
            "cup_to_disc": float(cdr),
            "fovea": (float(fovea[1]), float(fovea[0])),
            "lesions": lesions,
        },
    )


GENERATORS: dict[str, Callable[..., Case]] = {
    "chest": chest_case,
    "abdomen": abdomen_case,
    "fundus": fundus_case,
}


def make_case(task: str, seed: int, size: int = 256) -> Case:
    """The phantom case of a task ("chest", "abdomen" or "fundus") for a seed."""
    try:
        generator = GENERATORS[task]
    except KeyError:
        raise ValueError(f"unknown phantom task {task!r}; one of {sorted(GENERATORS)}") from None
    return generator(seed, size)
