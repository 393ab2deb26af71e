"""From network output to a label map: threshold or argmax, small islands, holes."""

from __future__ import annotations

import cv2
import numpy as np

from medviewer.imaging.labelmaps import remove_small_components
from medviewer.models.spec import ModelSpec


def label_map(probs: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(C, H, W) class probabilities -> uint8 (H, W) class indices."""
    if probs.shape[0] == 2:
        return (probs[1] >= spec.mask_threshold).astype(np.uint8)
    return np.argmax(probs, axis=0).astype(np.uint8)


def fill_holes(labels: np.ndarray) -> np.ndarray:
    """Background enclosed by one class becomes that class (holes do not touch the border)."""
    out = labels.copy()
    for cls in np.unique(labels):
        if cls == 0:
            continue
        inside = (labels == cls).astype(np.uint8)
        # Background components of the inverse that do not touch the border are holes.
        n, comp = cv2.connectedComponents((inside == 0).astype(np.uint8), connectivity=4)
        border = set(np.unique(np.concatenate([comp[0], comp[-1], comp[:, 0], comp[:, -1]])))
        holes = [k for k in range(1, n) if k not in border]
        if holes:
            fill = np.isin(comp, holes) & (out == 0)
            out[fill] = cls
    return out


def postprocess(probs: np.ndarray, spec: ModelSpec) -> np.ndarray:
    return clean(label_map(probs, spec), spec)


def clean(labels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The spec's clean-up of a label map: small islands removed, holes filled."""
    labels = remove_small_components(labels, spec.min_component_pixels)
    return fill_holes(labels) if spec.fill_holes else labels


def changes_labels(spec: ModelSpec) -> bool:
    """Whether `clean` can change a label map (else the device's class counts still hold)."""
    return spec.min_component_pixels > 1 or spec.fill_holes


def pixel_entropy(probs: np.ndarray) -> float:
    """Mean per-pixel entropy, normalised to 0..1 by log(C): the worklist's uncertainty."""
    p = np.clip(probs, 1e-7, 1.0)
    h = -(p * np.log(p)).sum(axis=0)
    return float(h.mean() / np.log(probs.shape[0]))


def label_entropy(probs: np.ndarray, multilabel: bool) -> float:
    """Mean binary entropy (multi-label) or categorical entropy (multi-class), 0..1."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if multilabel:
        h = -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)
        return float(h.mean())
    return float(-(p * np.log(p)).sum() / np.log(max(len(p), 2)))
