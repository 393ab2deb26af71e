"""Model specs: valid ones round-trip, invalid ones name the file, the field and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medviewer.models.errors import SpecError
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec

SEG = {
    "name": "chest",
    "task": "segmentation+classification",
    "architecture": "Unet",
    "encoder": "resnet18",
    "classes": [
        {"name": "background", "color": [0, 0, 0]},
        {"name": "pneumothorax", "color": [255, 0, 0]},
    ],
    "labels": ["pneumothorax"],
    "input": {"size": [64, 64], "large_image": "tile", "tile_overlap": 0.5},
    "normalization": {"mean": [0.4], "std": [0.2], "window": [40, 400]},
    "postprocess": {"min_component_pixels": 20, "fill_holes": True},
    "gate": {"type": "classifier", "threshold": 0.3},
}


def test_round_trip_through_json(tmp_path: Path) -> None:
    spec = ModelSpec.from_dict(SEG)
    assert spec.gate.label == "pneumothorax" and spec.gate.threshold == 0.3
    assert spec.input_size == (64, 64) and spec.large_image == "tile" and spec.window == (40, 400)
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    assert ModelSpec.load(path) == spec


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "detection"}, "task is 'detection'; valid: segmentation, classification"),
        ({"architecture": None}, "needs an architecture"),
        ({"classes": ["background"]}, "at least 2 classes"),
        ({"labels": []}, "needs labels"),
        ({"input": {"size": [100, 64]}}, "multiples of 32"),
        ({"gate": {"type": "magic"}}, "gate: type is 'magic'; valid: none, pixel_count"),
        ({"gate": {"type": "two_stage"}}, "needs gate.model"),
        ({"gate": {"type": "classifier", "label": "effusion"}}, "gate label 'effusion'"),
        ({"normalization": {"mean": [0.1, 0.2]}}, "mean/std need 1 value(s)"),
        ({"colour": "red"}, "unknown field(s) colour"),
        ({"classes": [{"name": "bg", "color": [0, 0, 300]}, "x"]}, "classes[0].color"),
        ({"decoder_channels": [64, "wide"]}, "decoder_channels must be a list of positive"),
        ({"encoder_depth": 6}, "encoder_depth must be 3, 4 or 5, got 6"),
        ({"encoder_depth": 4.5}, "encoder_depth must be 3, 4 or 5"),
    ],
)
def test_invalid_specs_say_why(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**SEG, **change}))
    with pytest.raises(SpecError) as e:
        ModelSpec.load(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value)


def test_not_json(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{oops")
    with pytest.raises(SpecError, match=r"x.json: not valid JSON"):
        ModelSpec.load(path)


def test_unknown_architecture_and_encoder_list_valid_names() -> None:
    with pytest.raises(SpecError, match=r"unknown architecture 'Unett'; valid: .*unet"):
        build_model(ModelSpec.from_dict({**SEG, "architecture": "Unett"}))
    with pytest.raises(SpecError, match=r"unknown encoder 'resnet9'; valid: .*resnet18"):
        build_model(ModelSpec.from_dict({**SEG, "encoder": "resnet9"}))


def test_decoder_channels_narrow_the_unet_and_must_fit_the_encoder() -> None:
    narrow = ModelSpec.from_dict({**SEG, "decoder_channels": [32, 16, 16, 8, 8]})
    assert narrow.decoder_channels == (32, 16, 16, 8, 8)
    count = lambda spec: sum(p.numel() for p in build_model(spec).parameters())  # noqa: E731
    assert count(narrow) < count(ModelSpec.from_dict(SEG))
    with pytest.raises(SpecError, match=r"chest: .*depth is 5.*2 blocks"):
        build_model(ModelSpec.from_dict({**SEG, "decoder_channels": [16, 8]}))


@pytest.mark.parametrize("encoder", ["resnet18", "timm-tf_efficientnet_lite0"])
def test_encoder_depth_4_stops_at_stride_16_and_keeps_no_unused_weights(encoder: str) -> None:
    """Grad-CAM and label spreading read the encoder's last map: 16x16 from 256x256 at depth 4.
    The stage smp keeps but never runs is dropped, so no checkpoint carries it."""
    shallow = {**SEG, "encoder": encoder, "encoder_depth": 4, "decoder_channels": [32, 16, 8, 8]}
    deep = {**SEG, "encoder": encoder, "decoder_channels": [32, 16, 8, 8, 8]}
    classifier = {**shallow, "task": "classification", "architecture": None, "gate": "none"}
    for base in (shallow, classifier):
        model = build_model(ModelSpec.from_dict(base)).eval()
        assert model.encoder(torch.zeros(1, 1, 256, 256))[-1].shape[-2:] == (16, 16)
    count = lambda d: sum(p.numel() for p in build_model(ModelSpec.from_dict(d)).parameters())  # noqa: E731
    assert count(shallow) < 0.7 * count(deep)
    with pytest.raises(SpecError, match=r"chest: .*depth is 4"):  # widths for 5 stages
        build_model(ModelSpec.from_dict({**shallow, "decoder_channels": [32, 16, 8, 8, 8]}))
