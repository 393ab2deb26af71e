"""Training with simulated clicks: a tiny guided model learns to follow clicks (its Dice with
clicks beats its Dice without, by a wide margin), validation reports the click metrics, and
`medviewer evaluate-clicks` prints them for a workspace's held-out images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medviewer.cli import main
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import add_model
from medviewer.training.click_metrics import summarise, validate_clicks
from medviewer.training.data import Prepared, TrainingSet
from medviewer.training.protocol import Epoch, TrainConfig
from medviewer.training.trainer import fit
from medviewer.workspace import Workspace
from tests.specs import tiny_segmenter
from tests.training.test_data import confirm, make_studies, one_thread  # noqa: F401

# Depth 3: a few seconds an epoch on one CPU thread.
SMALL = {"encoder_depth": 3, "decoder_channels": [32, 16, 8]}


def two_discs(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Two alike bright discs per image; the truth is one of them. Without clicks a model can
    only guess which (Dice about 0.5-0.67); a click says."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        image = rng.normal(0.3, 0.05, (size, size)).astype(np.float32)
        mask = np.zeros((size, size), np.uint8)
        while True:
            c = rng.uniform(12, size - 12, (2, 2))
            r = rng.uniform(6, 10, 2)
            if np.hypot(*(c[0] - c[1])) > r.sum() + 4:
                break
        for k in range(2):
            inside = (yy - c[k, 0]) ** 2 + (xx - c[k, 1]) ** 2 < r[k] ** 2
            image[inside] += 0.4
            if k == 0:
                mask[inside] = 1
        images.append(image[..., None])
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def prepared(spec: ModelSpec, n: int, seed: int) -> Prepared:
    x, m = two_discs(n, seed)
    none = np.zeros((n, 0), np.float32)
    return Prepared(spec, x, m, np.ones(n, bool), none, none, np.zeros(n, bool), list(range(n)))


def test_a_guided_model_learns_to_follow_clicks() -> None:
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", **SMALL))
    torch.manual_seed(0)
    model = build_model(spec)
    train, val = prepared(spec, 48, 1), prepared(spec, 12, 2)
    events: list = []
    cfg = TrainConfig(epochs=10, batch_size=6, lr=3e-3, device="cpu", patience=0, augment=False)
    fit(model, spec, train, val, cfg, emit=events.append)
    reported = [e.metrics["clicks"] for e in events if isinstance(e, Epoch)]
    assert len(reported) == 10 and reported[-1]["max_clicks"] == 10
    assert set(reported[-1]["dice_after"]) == {"0", "1", "3", "5"}
    # The model as trained (last epoch): clicks lift its Dice far above its guess without.
    m = validate_clicks(model, val.images, list(val.masks), spec, "cpu", max_clicks=5)
    assert m.objects == 12
    assert m.dice_after["3"] > m.dice_after["0"] + 0.2, m
    assert m.noc85 is not None and m.noc85 < 5


def test_training_samples_carry_simulated_clicks_some_without() -> None:
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_prev_mask=True))
    data = prepared(spec, 40, 3)
    batch = TrainingSet(data, seed=1, clicks=True).batch(range(40))
    assert batch["image"].shape == (40, 4, 64, 64)
    clicked = batch["click_class"].numpy() > 0
    guidance = batch["image"][:, 1:3].flatten(1).amax(1).numpy() > 0
    assert np.array_equal(clicked, guidance)  # clicks exactly where a class was clicked
    assert 12 <= (~clicked).sum() <= 28  # about half without clicks (data.NO_CLICKS)
    positive = batch["image"][:, 1].numpy() > 0
    truth = batch["mask"].numpy() > 0
    # Positive discs lie mostly on the object (a disc at its edge sticks out; at random ~10%).
    assert (positive & truth).sum() > 0.75 * positive.sum()
    val = TrainingSet(data).batch(range(3))
    assert val["image"].shape == (3, 4, 64, 64) and not val["image"][:, 1:].any()
    again = TrainingSet(data, seed=1, clicks=True).batch(range(40))
    assert torch.equal(again["image"], batch["image"])  # seeded
    assert not torch.equal(batch["mask"], torch.from_numpy(data.masks).long())  # zoomed crops


def test_without_zoom_training_samples_are_the_whole_image() -> None:
    spec = ModelSpec.from_dict(
        tiny_segmenter(guidance="clicks", guidance_prev_mask=True, guidance_zoom=False)
    )
    data = prepared(spec, 40, 3)
    batch = TrainingSet(data, seed=1, clicks=True).batch(range(40))
    assert (batch["click_class"] > 0).sum() >= 12
    assert np.array_equal(batch["mask"].numpy(), data.masks)  # the truth as it is, no crop
    image = batch["image"][:, 0].numpy()
    plain = TrainingSet(data).batch(range(40))["image"][:, 0].numpy()
    assert np.array_equal(image, plain)  # and the image as it is


def test_summary_of_click_curves() -> None:
    m = summarise([[0.5, 0.86, 0.95], [0.2, 0.3, 0.4], [0.92, 0.93, 0.93]], max_clicks=2)
    assert m.noc85 == pytest.approx((1 + 2 + 0) / 3)
    assert m.noc90 == pytest.approx((2 + 2 + 0) / 3)
    assert m.dice_after == pytest.approx({"0": 1.62 / 3, "1": 2.09 / 3})
    assert m.never_90 == pytest.approx(1 / 3) and m.objects == 3
    assert summarise([], 20).noc90 is None


def test_evaluate_clicks_prints_the_figures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    truth = make_studies(tmp_path / "study", patients=2, slices=3)
    with Workspace.open(tmp_path / "ws") as ws:
        ws.import_paths([tmp_path / "study"])
        confirm(ws, truth)
        torch.manual_seed(0)
        add_model(ws, ModelSpec.from_dict(tiny_segmenter(guidance="clicks", **SMALL)), None)
    ws_dir = str(tmp_path / "ws")
    args = ["evaluate-clicks", "--workspace", ws_dir, "--model", "lesion", "--max-clicks", "3"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == "v1" and out["objects"] == 4  # 6 slices, every third negative
    assert out["max_clicks"] == 3 and set(out["dice_after"]) == {"0", "1", "3"}
    assert 0 <= out["noc90"] <= 3 and 0 <= out["never_90"] <= 1
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "NoC@85" in text and "NoC@90" in text and "never reaching 0.90" in text
    with Workspace.open(tmp_path / "ws") as ws:
        add_model(ws, ModelSpec.from_dict(tiny_segmenter("plain", **SMALL)), None)
    assert main(["evaluate-clicks", "--workspace", ws_dir, "--model", "plain"]) == 2
    assert "takes no clicks" in capsys.readouterr().err
