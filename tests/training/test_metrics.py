"""Validation metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.models.spec import ModelSpec
from medviewer.training.metrics import Scores, auc, f1

SEG4 = ModelSpec.from_dict(
    {
        "name": "m",
        "task": "segmentation",
        "architecture": "Unet",
        "encoder": "resnet18",
        "classes": ["background", "a", "b", "c"],
        "input": {"size": [32, 32]},
    }
)


def test_auc_is_the_mann_whitney_statistic_with_ties() -> None:
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auc(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1])) == 0.5
    assert auc(np.array([0.9, 0.1]), np.array([0, 1])) == 0.0
    assert auc(np.array([0.2, 0.3]), np.array([1, 1])) is None
    # Brute force over all positive/negative pairs (ties count half).
    rng = np.random.default_rng(0)
    s, t = rng.integers(0, 5, 200) / 4, rng.random(200) < 0.3
    pairs = s[t][:, None] - s[~t][None, :]
    assert auc(s, t) == pytest.approx(((pairs > 0) + 0.5 * (pairs == 0)).mean())


def test_f1() -> None:
    assert f1(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == 0.5
    assert f1(np.array([0, 0]), np.array([0, 0])) is None


def _onehot(labels: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[labels].transpose(0, 3, 1, 2)


def test_dice_iou_per_class_over_the_whole_set() -> None:
    truth = np.zeros((2, 8, 8), np.int64)
    truth[0, :2, :2] = 1  # 4 px of a
    truth[1, 4:, 4:] = 2  # 16 px of b
    pred = truth.copy()
    pred[0, :2, 2:4] = 1  # 4 false-positive px of a
    pred[1, 4:6, 4:] = 0  # 8 px of b missed
    pred[1, 0, 0] = 3  # c predicted where there is none
    scores = Scores(SEG4)
    batch = {
        "has_mask": np.ones(2, bool),
        "mask": truth,
        "labels": np.zeros((2, 0)),
        "label_known": np.zeros((2, 0)),
    }
    scores.add(_onehot(pred, 4), None, batch)
    r = scores.result()
    assert r["dice"]["a"] == pytest.approx(2 * 4 / (8 + 4))
    assert r["iou"]["a"] == pytest.approx(4 / 8)
    assert r["dice"]["b"] == pytest.approx(2 * 8 / (8 + 16))
    assert r["dice"]["c"] == 0.0
    assert r["score"] == r["mean_dice"] == pytest.approx(np.mean([2 / 3, 2 / 3, 0]))
    assert r["gate_accuracy"] == 1.0  # both images have a finding, both predicted one


def test_gate_accuracy_uses_the_models_gate() -> None:
    spec = ModelSpec.from_dict(
        {
            **SEG4.to_dict(),
            "classes": ["background", "x"],
            "gate": {"type": "pixel_count", "min_pixels": 5},
        }
    )
    truth = np.zeros((3, 8, 8), np.int64)
    truth[0, :3, :3] = 1
    pred = np.zeros_like(truth)
    pred[0, :3, :3] = 1  # found
    pred[1, 0, :3] = 1  # 3 px on a negative: gated out, and counted as no finding
    pred[2, :3, :3] = 1  # 9 px on a negative: a false finding
    scores = Scores(spec)
    batch = {
        "has_mask": np.ones(3, bool),
        "mask": truth,
        "labels": np.zeros((3, 0)),
        "label_known": np.zeros((3, 0)),
    }
    scores.add(_onehot(pred, 2), None, batch)
    r = scores.result()
    assert r["gate_accuracy"] == pytest.approx(2 / 3)
    assert r["dice"]["x"] == pytest.approx(2 * 9 / (9 + 18))  # the gated-out pixels are gone
