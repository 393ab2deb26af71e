"""The volume the three-plane viewer loads: stack order, masks from the review state, refusals."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from medviewer.imaging.loading import ImageLoader
from medviewer.workspace import Workspace
from medviewer.workspace.volume_review import NotAVolume, load_volume_review


def test_volume_in_stack_order_with_each_slice_mask(ws: Workspace) -> None:
    rows = ws.images()
    ws.revisions.save_mask(rows[1].id, np.full((32, 24), 4, np.uint8), source="human", author="a")
    review = load_volume_review(ws, rows[2].id, ImageLoader())
    assert review.stored.shape == (3, 32, 24) and review.labels.flags.c_contiguous
    # series_dir's slice k holds 100 * k at z = k: ascending z.
    assert [int(review.stored[k, 0, 0]) for k in range(3)] == [0, 100, 200]
    k = review.slice_of(rows[1].id)
    assert np.all(review.labels[k] == 4) and review.labels.sum() == 4 * 32 * 24
    assert review.reslicer.axes.spacing == pytest.approx((1.0, 0.7, 0.8))
    assert review.render_plane("coronal", (0, 0, 0), None).dtype == np.uint8


def test_a_single_image_is_not_a_volume(tmp_path: Path) -> None:
    folder = tmp_path / "png"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8), np.uint8))
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([folder])
        image = ws.images()[0]
        with pytest.raises(NotAVolume, match=f"image {image.id} .*a.png.* single slice"):
            load_volume_review(ws, image.id, ImageLoader())
        with pytest.raises(NotAVolume, match="no such image"):
            load_volume_review(ws, 999, ImageLoader())
