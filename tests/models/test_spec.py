"""Model specs: valid ones round-trip, invalid ones name the file, the field and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medviewer.models.errors import SpecError
from medviewer.models.registry import build_model
from medviewer.models.spec import SECTIONS, ModelSpec

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
        ({"normalization": {"mean": [0.1, 0.2]}}, "normalization mean (one per input channel)"),
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


# Every field with values of the wrong type: each a SpecError naming the field (issue 17 found
# AttributeError, TypeError and ValueError tracebacks for most of them).
WRONG_TYPES: list[tuple[str, object]] = [
    (field, value)
    for field in (
        "name",
        "task",
        "encoder",
        "architecture",
        "in_channels",
        "encoder_depth",
        "encoder_weights",
        "classes",
        "labels",
        "label_mode",
        "input",
        "input_size",
        "large_image",
        "tile_overlap",
        "normalization",
        "mean",
        "std",
        "window",
        "postprocess",
        "min_component_pixels",
        "fill_holes",
        "mask_threshold",
        "label_thresholds",
        "gate",
        "decoder_channels",
        "applies_to",
        "input.size",
        "input.large_image",
        "input.tile_overlap",
        "normalization.mean",
        "normalization.std",
        "normalization.window",
        "postprocess.min_component_pixels",
        "postprocess.fill_holes",
        "gate.type",
        "gate.min_pixels",
        "gate.label",
        "gate.threshold",
        "gate.model",
        "applies_to.modalities",
        "applies_to.colour",
        "applies_to.min_size",
        "applies_to.series_description",
    )  # fmt: skip
    for value in (5, 2.5, True, "x", [], [1], ["a"], [[1]], {"a": 1}, float("nan"), -1)
]
# The values that are right for a field, or that JSON cannot tell from right ones.
RIGHT = [
    ("encoder_depth", 5), ("labels", "x"), ("labels", []),
    ("labels", ["a"]), ("gate", "x"), ("input", {"a": 1}), ("classes", ["a"]),
    ("applies_to.modalities", "x"), ("applies_to.modalities", []),
    ("applies_to.modalities", ["a"]), ("applies_to.series_description", "x"),
    ("architecture", "x"), ("encoder", "x"), ("name", "x"), ("encoder_weights", "x"),
    ("gate.label", "x"), ("gate.model", "x"), ("decoder_channels", [1]),
    ("min_component_pixels", 5), ("postprocess.min_component_pixels", 5),
    ("label_thresholds", {"a": 1}), ("gate.min_pixels", 5), ("mean", [1]), ("std", [1]),
    ("fill_holes", True),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES)
def test_every_field_of_the_wrong_type_is_a_spec_error(field: str, value: object) -> None:
    data = json.loads(json.dumps(SEG))
    parent, _, key = field.rpartition(".")
    for section, fields in SECTIONS.items():  # the field given one way only, as it is read
        for nested, flat in fields.items():
            if key in (nested, flat) and parent in (section, ""):
                data.get(section, {}).pop(nested, None)
    target = data.setdefault(parent, {}) if parent else data
    target[key] = value
    try:
        ModelSpec.from_dict(data, "bad.json")
    except SpecError as e:
        assert str(e).startswith("bad.json: ")
        return
    assert (field, value) in RIGHT or (key, value) in RIGHT, f"{field}={value!r} was accepted"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input": []}, "input must be an object"),
        ({"normalization": "x"}, "normalization must be an object"),
        ({"gate": [1]}, "gate must be an object"),
        ({"labels": 5}, "labels must be a list of distinct names, got 5"),
        ({"min_component_pixels": "x"}, "min_component_pixels must be a whole number"),
        ({"std": ["a"]}, "normalization std (one per input channel) must be a list of 1"),
        ({"label_thresholds": ["pneumothorax"]}, "label_thresholds must be an object"),
        ({"label_thresholds": {"pneumothorax": "high"}}, "pneumothorax must be a number"),
        ({"fill_holes": "no"}, "fill_holes must be true or false, got 'no'"),
        ({"window": [40, 0]}, "window width must be above 0"),
        ({"mean": [float("nan")]}, "normalization mean (one per input channel)"),
        ({"std": [float("inf")]}, "normalization std (one per input channel)"),
        ({"in_channels": 1.5}, "in_channels must be a whole number from 1 to 4"),
        ({"labels": ["a", "a"]}, "labels must be a list of distinct names"),
        ({"postprocess": {"fill_hole": True}}, "postprocess: unknown field(s) fill_hole"),
        ({"postprocess": {"fill_holes": True}}, "postprocess.fill_holes and fill_holes are both"),
        ({"gate": {"type": "none", "label": 3}}, "gate: label must be a non-empty string"),
        ({"labels": ["x" * 10_000, ""]}, "labels must be a list of distinct names, got ['xxx"),
    ],
)
def test_issue_17_malformed_specs_say_which_field(change: dict, message: str) -> None:
    with pytest.raises(SpecError) as e:
        ModelSpec.from_dict({**ModelSpec.from_dict(SEG).to_dict(), **change}, "bad.json")
    assert str(e.value).startswith("bad.json: ") and message in str(e.value)
    assert len(str(e.value)) < 300  # a value is shown cut short


def test_json_nested_too_deeply_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match=r"deep.json: not a model spec: JSON nested too deeply"):
        ModelSpec.load(path)
    path.write_text(json.dumps([SEG]))
    with pytest.raises(SpecError, match=r"a model spec is a JSON object"):
        ModelSpec.load(path)
