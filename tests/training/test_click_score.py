"""A guided model's validation score weighs both of its uses: the mean of its Dice without
clicks and after `SCORE_CLICKS` of the robot's clicks (the trainer picks its best epoch by it,
Retrain compares the active version by it); an unguided model's score is its Dice."""

from __future__ import annotations

import pytest
import torch

from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.training.click_metrics import SCORE_CLICKS, with_click_score
from medviewer.training.data import TrainingSet
from medviewer.training.metrics import evaluate
from tests.specs import tiny_segmenter
from tests.training.test_click_training import SMALL, prepared


def _model(spec: ModelSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(spec, pretrained=False)


def test_a_guided_score_is_the_mean_of_dice_without_and_after_clicks() -> None:
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", **SMALL))
    model, val = _model(spec), prepared(spec, 4, 5)
    plain = evaluate(model, TrainingSet(val), spec, "cpu")
    out = with_click_score(model, val, plain, spec, "cpu")
    after = out["clicks"]["dice_after"][str(SCORE_CLICKS)]
    assert out["clicks"]["objects"] == 4
    assert out["score_without_clicks"] == plain["score"] == plain["mean_dice"]
    assert out["score"] == pytest.approx((plain["mean_dice"] + after) / 2)
    assert "clicks" not in plain  # the metrics given are not changed


def test_an_unguided_score_and_a_validation_without_truth_stay_as_they_are() -> None:
    spec = ModelSpec.from_dict(tiny_segmenter(**SMALL))
    model, val = _model(spec), prepared(spec, 3, 6)
    plain = evaluate(model, TrainingSet(val), spec, "cpu")
    assert with_click_score(model, val, plain, spec, "cpu") is plain
    guided = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", **SMALL))
    empty = {"score": 0.0, "mean_dice": None}  # no class in the truth: no Dice
    assert with_click_score(_model(guided), prepared(guided, 3, 6), empty, guided, "cpu") is empty
