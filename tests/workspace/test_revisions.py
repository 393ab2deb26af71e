"""Revisions are append-only; original and final both stay; bad masks are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.workspace import MaskMismatch, Workspace
from tests.workspace.pg_server import stored_blobs


def _mask(value: int = 1) -> np.ndarray:
    m = np.zeros((32, 24), np.uint8)
    m[2:10, 3:5] = value
    m[0, 0] = value  # asymmetric corner: catches transposes on read-back
    return m


def test_original_final_and_history(ws: Workspace) -> None:
    image = ws.images()[0].id
    ai = ws.revisions.save_mask(image, _mask(1), source="ai", author="unet", model=("chest", "3"))
    human = ws.revisions.save_mask(image, _mask(2), source="human", author="dr.a")
    ai2 = ws.revisions.save_mask(
        image, _mask(1) * 0, source="ai", author="unet", model=("chest", "4")
    )
    assert ws.revisions.original(image).id == ai2.id
    assert ws.revisions.confirmed(image).revision.id == human.id
    assert [r.id for r in ws.revisions.history(image)] == [ai.id, human.id, ai2.id]
    assert human.parent_id == ai.id and ai2.parent_id == human.id
    assert np.array_equal(ws.revisions.read_mask(ws.revisions.get(ai.id)), _mask(1))
    assert np.array_equal(ws.revisions.read_mask(human), _mask(2))
    assert human.summary["pixels"] == {"0": 32 * 24 - 17, "2": 17}
    assert ai.model_name == "chest" and ai.model_version == "3"


def test_identical_masks_share_one_blob(ws: Workspace) -> None:
    a, b = (r.id for r in ws.images()[:2])
    r1 = ws.revisions.save_mask(a, _mask(), source="human", author="dr")
    r2 = ws.revisions.save_mask(b, _mask(), source="human", author="dr")
    assert r1.blob == r2.blob and stored_blobs(ws) == 1


def test_labels_and_status(ws: Workspace) -> None:
    image = ws.images()[0].id
    ws.revisions.save_labels(
        image,
        {"pneumothorax": True, "effusion": False},
        source="ai",
        author="clf",
        model=("clf", "1"),
        summary={"probabilities": {"pneumothorax": 0.81, "effusion": 0.1}},
    )
    ws.revisions.save_labels(
        image, {"pneumothorax": False, "effusion": False}, source="human", author="dr"
    )
    assert ws.revisions.original(image, "labels").labels == {
        "pneumothorax": True,
        "effusion": False,
    }
    assert ws.revisions.confirmed(image, "labels").revision.labels["pneumothorax"] is False
    assert ws.image(image).status == "in_progress"  # a human edit starts the review
    ws.revisions.set_status(image, "rejected", author="dr.b")
    row = ws.image(image)
    assert (row.status, row.status_author) == ("rejected", "dr.b")
    with pytest.raises(ValueError, match="unknown review status 'done'"):
        ws.revisions.set_status(image, "done", author="dr")


def test_wrong_size_mask_names_the_image(ws: Workspace) -> None:
    row = ws.images()[0]
    with pytest.raises(MaskMismatch, match=r"s0.dcm: mask is 32x32, the image is 24x32"):
        ws.revisions.save_mask(row.id, np.zeros((32, 32), np.uint8), source="human", author="dr")
    assert ws.revisions.history(row.id) == []


def test_class_out_of_range_and_negative_values(ws: Workspace) -> None:
    row = ws.images()[0]
    with pytest.raises(MaskMismatch, match="mask has class 5, the model has only 3 classes"):
        ws.revisions.save_mask(row.id, _mask(5), source="import", author="x", num_classes=3)
    with pytest.raises(MaskMismatch, match="class indices 0-255"):
        ws.revisions.save_mask(row.id, _mask(1).astype(np.int16) - 2, source="human", author="x")


def test_unknown_source_and_missing_author(ws: Workspace) -> None:
    image = ws.images()[0].id
    with pytest.raises(ValueError, match="unknown revision source"):
        ws.revisions.save_mask(image, _mask(), source="robot", author="x")
    with pytest.raises(ValueError, match="needs an author"):
        ws.revisions.save_mask(image, _mask(), source="human", author="")
