"""Gate rules and post-processing on hand-made outputs."""

from __future__ import annotations

import numpy as np
import pytest

from medviewer.inference.engine import RawOutput
from medviewer.inference.gate import apply_gate
from medviewer.inference.postprocess import (
    fill_holes,
    label_entropy,
    pixel_entropy,
    remove_small_components,
)
from medviewer.inference.proposal import gated_out, make_proposal
from medviewer.models.spec import ModelSpec
from tests.inference.conftest import TINY, grey, tiny_engine


def _probs(mask: np.ndarray) -> np.ndarray:
    fg = mask.astype(np.float32) * 0.9 + 0.05
    return np.stack([1 - fg, fg])


def _blobs() -> np.ndarray:
    m = np.zeros((40, 40), np.uint8)
    m[5:15, 5:15] = 1  # 100 px
    m[30:32, 30:32] = 1  # 4 px: the "few positive pixels" on a negative image
    return m


def test_pixel_count_gate_empties_the_mask() -> None:
    eng = tiny_engine(
        gate={"type": "pixel_count", "min_pixels": 150}, task="segmentation", labels=[]
    )
    p = make_proposal(eng, RawOutput(_probs(_blobs()), {}), "1")
    assert p.gate.finding is False and p.gate.detail == "no finding: 104 px < 150"
    assert p.mask.shape == (40, 40) and not p.mask.any()  # stored empty, not hidden


def test_classifier_gate_uses_aux_head() -> None:
    eng = tiny_engine(gate={"type": "classifier", "threshold": 0.5})
    neg = make_proposal(eng, RawOutput(_probs(_blobs()), {"finding": 0.04}), "1")
    assert (neg.gate.finding, neg.gate.detail) == (False, "no finding: classifier 0.04")
    assert not neg.mask.any()
    pos = make_proposal(eng, RawOutput(_probs(_blobs()), {"finding": 0.91}), "1")
    assert pos.gate.finding and pos.mask.sum() == 104
    assert pos.summary()["probability"] == 0.91 and pos.summary()["finding"] is True


def test_two_stage_gate_skips_the_segmenter() -> None:
    spec = ModelSpec.from_dict(
        {
            **TINY,
            "task": "segmentation",
            "labels": [],
            "gate": {"type": "two_stage", "model": "clf", "label": "finding"},
        }
    )
    gate = apply_gate(spec, None, {}, stage_one=0.2)
    assert gate.rule == "two_stage" and gate.detail == "no finding: classifier clf 0.20"
    eng = tiny_engine(
        task="segmentation",
        labels=[],
        gate={"type": "two_stage", "model": "clf", "label": "finding"},
    )
    p = gated_out(eng, grey(50, 60), "1", 0.2)
    assert p.mask.shape == (50, 60) and not p.mask.any() and not p.gate.finding


def test_no_gate_reports_area() -> None:
    eng = tiny_engine(task="segmentation", labels=[])
    p = make_proposal(eng, RawOutput(_probs(_blobs()), {}), "1")
    assert p.gate.finding and p.gate.detail == "finding: 104 px"


def test_small_islands_removed_per_class() -> None:
    m = _blobs()
    m[20:22, 2:4] = 2
    out = remove_small_components(m, 10)
    assert out[30:32, 30:32].sum() == 0 and out[5:15, 5:15].all() and not (out == 2).any()


def test_fill_holes_only_enclosed() -> None:
    m = np.zeros((20, 20), np.uint8)
    m[2:10, 2:10] = 1
    m[4:6, 4:6] = 0  # a hole
    m[0:5, 15:20] = 1
    m[0:2, 17:19] = 0  # a notch touching the border: not a hole
    out = fill_holes(m)
    assert out[4:6, 4:6].all() and not out[0:2, 17:19].any()


def test_uncertainty_scores() -> None:
    sure = _probs(np.ones((8, 8)))
    unsure = np.full((2, 8, 8), 0.5, np.float32)
    assert pixel_entropy(unsure) == pytest.approx(1.0) and pixel_entropy(sure) < 0.4
    assert label_entropy(np.array([0.5, 0.5]), multilabel=True) == pytest.approx(1.0)
    assert label_entropy(np.array([0.99, 0.01]), multilabel=True) < 0.1
