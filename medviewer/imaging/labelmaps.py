"""Operations on label maps (uint8 class indices) that both the model's post-processing and the
clinician's editing tools use; no model code here."""

from __future__ import annotations

import cv2
import numpy as np


def remove_small_components(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Set connected regions (8-connected, per class) smaller than min_pixels to background."""
    if min_pixels <= 1:
        return labels
    out = labels.copy()
    for cls in np.unique(labels):
        if cls == 0:
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels == cls).astype(np.uint8), 8)
        small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_pixels) + 1
        if small.size:
            out[np.isin(comp, small)] = 0
    return out
