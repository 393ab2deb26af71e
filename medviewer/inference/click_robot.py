"""The click robot: the clicks a clinician would make to correct a mask, as RITM and DeepEdit
simulate them, for evaluation (`evaluate-clicks`, training's validation) and for training.

Each click goes to the point of an error region farthest from its border (the maximum of the
distance transform, the image's edge counting as border): the first on an empty mask is the
middle of the object; then, on a prediction, the larger of the missed region (a positive click)
and the false positive region (negative), "larger" by that distance, as RITM's robot decides.
"""

from __future__ import annotations

import cv2
import numpy as np

from medviewer.inference.clicks import Click


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def _depth(region: np.ndarray) -> np.ndarray:
    """Distance of each pixel of `region` to the nearest pixel outside it or the image's edge."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _pick(depth: np.ndarray, rng: np.random.Generator | None) -> tuple[int, int]:
    """The deepest point; with `rng` (training) any point at least half as deep, so a model
    does not learn that clicks lie exactly in the middle."""
    if rng is None:
        r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
        return int(r), int(c)
    rows, cols = np.nonzero(depth >= 0.5 * depth.max())
    k = int(rng.integers(len(rows)))
    return int(rows[k]), int(cols[k])


def next_click(
    truth: np.ndarray,
    pred: np.ndarray,
    class_value: int = 1,
    rng: np.random.Generator | None = None,
) -> Click | None:
    """The robot's next click for boolean masks of one class; None when there is no error."""
    missed = truth & ~pred
    extra = pred & ~truth
    d_missed = _depth(missed) if missed.any() else None
    d_extra = _depth(extra) if extra.any() else None
    if d_missed is None and d_extra is None:
        return None
    positive = d_extra is None or (d_missed is not None and d_missed.max() >= d_extra.max())
    depth = d_missed if positive else d_extra
    r, c = _pick(depth, rng)  # type: ignore[arg-type]
    return Click(r, c, positive, class_value)


def first_click(truth: np.ndarray, class_value: int = 1) -> Click | None:
    """The first click on an empty mask: the point of the object farthest from its border."""
    return next_click(truth, np.zeros_like(truth), class_value)


def simulated_clicks(
    truth: np.ndarray, prev: np.ndarray, n: int, class_value: int, rng: np.random.Generator
) -> list[Click]:
    """Up to `n` clicks a clinician would make on `prev` (boolean masks of one class), without a
    model: after each click the error region it lies in counts as fixed, so the next goes to
    the next error, as the robot's would after a model that follows each click."""
    pred = prev.copy()
    clicks: list[Click] = []
    for _ in range(n):
        click = next_click(truth, pred, class_value, rng)
        if click is None:
            break
        clicks.append(click)
        errors = truth != pred
        _, regions = cv2.connectedComponents(errors.astype(np.uint8), connectivity=8)
        fixed = regions == regions[int(click.row), int(click.col)]
        pred[fixed] = truth[fixed]
    return clicks


def perturbed(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong mask of one class for training: `truth` grown or shrunk, shifted, with
    a piece cut away or a false blob added, or nothing at all (a missed finding)."""
    h, w = truth.shape
    if rng.random() < 0.3 or not truth.any():
        return np.zeros_like(truth)
    out = truth.astype(np.uint8)
    k = int(rng.integers(1, max(2, min(h, w) // 16) + 1)) * 2 + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    out = cv2.dilate(out, kernel) if rng.random() < 0.5 else cv2.erode(out, kernel)
    shift = np.float32([[1, 0, rng.normal(0, w / 32)], [0, 1, rng.normal(0, h / 32)]])
    out = cv2.warpAffine(out, shift, (w, h), flags=cv2.INTER_NEAREST)
    yy, xx = np.ogrid[:h, :w]
    if rng.random() < 0.3:  # a piece cut away
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.05, 0.2) * min(h, w)
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 0
    if rng.random() < 0.3:  # a false blob
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.03, 0.1) * min(h, w)
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    return out.astype(bool)
