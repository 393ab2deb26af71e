"""Losses: class weights, the binary single-logit case, label weights, and the reason for all of
it: a rare class is learned with the default loss and missed by plain cross-entropy."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.training.data import Prepared
from medviewer.training.losses import (
    Criterion,
    LabelLoss,
    SegmentationLoss,
    class_weights,
    label_pos_weights,
)
from medviewer.training.trainer import TrainConfig, fit
from tests.training.test_data import one_thread  # noqa: F401 - autouse fixture

FOUR = ModelSpec.from_dict(
    {
        "name": "four",
        "task": "segmentation",
        "architecture": "Unet",
        "encoder": "resnet18",
        "classes": ["background", "organ", "box", "lesion"],
        "input": {"size": [64, 64]},
    }
)


def test_class_weights_favour_rare_classes_and_average_one() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[:20] = 1  # 20%
    mask[20:21] = 2  # 1%
    w = class_weights([mask], 4)
    freq = np.array([0.79, 0.2, 0.01, 0])
    assert w[2] > w[1] > w[0]
    assert w[2] / w[1] == pytest.approx(np.sqrt(20), rel=1e-4)  # inverse square root
    assert float((w.numpy() * freq).sum()) == pytest.approx(1.0)
    assert w[3] == w.max()  # absent class: never a target


def test_binary_loss_reads_one_logit() -> None:
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 1
    right = (target.float() * 2 - 1)[:, None] * 8  # confident and right
    for kind in ("dice+ce", "dice+focal", "ce"):
        loss = SegmentationLoss(kind)
        assert loss(right, target) < 0.01 < loss(-right, target)
    # ce on one logit is the BCE-with-logits of torch.
    z = torch.randn(2, 1, 8, 8)
    bce = F.binary_cross_entropy_with_logits(z[:, 0], target.float())
    assert SegmentationLoss("ce")(z, target).item() == pytest.approx(bce.item(), rel=1e-5)


def test_weighted_ce_matches_torch_and_focal_is_smaller() -> None:
    z = torch.randn(2, 4, 8, 8)
    target = torch.randint(0, 4, (2, 8, 8))
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    ours = SegmentationLoss("ce", w)(z, target).item()
    assert ours == pytest.approx(float(F.cross_entropy(z, target, weight=w)), rel=1e-5)
    focal = SegmentationLoss("dice+focal", w)(z, target) - SegmentationLoss("dice+ce", w)(z, target)
    assert focal < 0  # focal down-weights the pixels already right


def test_label_loss_counts_only_known_labels() -> None:
    labels = np.array([[1, 0], [0, 0], [0, 1], [0, 0]], np.float32)
    known = np.array([[1, 0], [1, 1], [1, 1], [1, 1]], np.float32)
    pw = label_pos_weights(labels, known)
    assert pw.tolist() == [3.0, 2.0]  # negatives / positives where the label is known
    loss = LabelLoss(True, pw)
    logits = torch.tensor([[8.0, 50.0]])  # the unknown second label is wildly wrong: ignored
    assert loss(logits, torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])) < 0.01


def test_criterion_skips_images_without_masks_and_sums_heads() -> None:
    out = {
        "mask": torch.randn(3, 1, 8, 8, requires_grad=True),
        "labels": torch.randn(3, 1, requires_grad=True),
    }
    batch = {
        "mask": torch.ones(3, 8, 8, dtype=torch.long),
        "has_mask": torch.tensor([True, False, False]),
        "labels": torch.ones(3, 1),
        "label_known": torch.ones(3, 1),
    }
    seg, lab = SegmentationLoss(), LabelLoss()
    total = Criterion(seg, lab)(out, batch)
    expected = seg(out["mask"][:1], batch["mask"][:1]) + lab(
        out["labels"], batch["labels"], batch["label_known"]
    )
    assert total.item() == pytest.approx(expected.item())
    total.backward()
    assert out["mask"].grad[1:].abs().sum() == 0  # no mask truth: no mask gradient


def four_class_set(n: int, seed: int) -> Prepared:
    """64x64: a large disc (organ, ~11%), a square (box, ~2%) and a small lesion of ~32 px
    (~0.8%), all on noise."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 64, 64, 1), np.float32)
    masks = np.zeros((n, 64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    for i in range(n):
        img = rng.normal(0.3, 0.08, (64, 64))
        cy, cx, r = *rng.uniform(20, 44, 2), rng.uniform(10, 14)
        organ = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        y0, x0 = rng.integers(2, 50, 2)
        box = (yy >= y0) & (yy < y0 + 10) & (xx >= x0) & (xx < x0 + 10) & ~organ
        ly, lx = rng.uniform(6, 58, 2)
        lesion = (yy - ly) ** 2 + (xx - lx) ** 2 < 3.2**2
        for cls, region, shift in ((1, organ, 0.25), (2, box, -0.2), (3, lesion, 0.25)):
            masks[i][region] = cls
            img[region] += shift
        images[i, ..., 0] = img
    none = np.zeros((n, 0), np.float32)
    return Prepared(
        FOUR, images, masks, np.ones(n, bool), none, none, np.zeros(n, bool), list(range(n))
    )


def test_default_loss_learns_a_rare_class_that_plain_ce_misses() -> None:
    train, val = four_class_set(32, seed=0), four_class_set(16, seed=1)
    shares = np.bincount(train.masks.ravel()) / train.masks.size
    assert shares[3] < 0.01  # the lesion is under 1% of the pixels
    results, started = {}, time.perf_counter()
    for name, loss, weighted in (("default", "dice+ce", True), ("plain ce", "ce", False)):
        torch.manual_seed(0)
        cfg = TrainConfig(
            epochs=6,
            batch_size=8,
            lr=3e-3,
            device="cpu",
            loss=loss,
            class_weights=weighted,
            augment=False,
            patience=0,
        )
        results[name] = fit(build_model(FOUR), FOUR, train, val, cfg).metrics["dice"]
    seconds = time.perf_counter() - started
    print(f"rare class: {results} in {seconds:.1f} s")
    assert all(results["default"][c] > 0.3 for c in ("organ", "box", "lesion"))
    assert (results["plain ce"]["lesion"] or 0.0) < 0.05
