"""Click guidance: the spec option, guided models (extra input channels starting silent, old
weights loading), the click encoding and crop, the click robot, and a guided proposal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from medviewer.imaging.display import Image
from medviewer.inference.click_robot import dice, first_click, next_click, simulated_clicks
from medviewer.inference.clicks import Box, Click, crop_box, encode, model_input, paste
from medviewer.inference.engine import Engine
from medviewer.inference.errors import InferenceError
from medviewer.inference.guided import propose_with_clicks
from medviewer.models.checkpoints import load_weights
from medviewer.models.errors import CheckpointMismatch, SpecError
from medviewer.models.registry import build_model, estimate_memory
from medviewer.models.spec import ModelSpec
from tests.specs import tiny_segmenter

GUIDED = tiny_segmenter(guidance="clicks")


def disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def test_spec_option_parses_and_refuses_bad_values() -> None:
    spec = ModelSpec.from_dict(GUIDED)
    assert spec.guided and spec.guidance_channels == 2 and spec.network_channels == 3
    prev = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_prev_mask=True))
    assert prev.guidance_channels == 3
    multi = ModelSpec.from_dict(
        tiny_segmenter(classes=["bg", "a", "b", "c"], guidance="clicks", guidance_prev_mask=True)
    )
    assert multi.guidance_channels == 9  # pos/neg per class + previous mask per class
    plain = ModelSpec.from_dict(tiny_segmenter())
    assert not plain.guided and plain.network_channels == 1
    assert "guidance" not in plain.to_dict()  # old specs write what they wrote
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    for bad, why in [
        ({"guidance": "scribbles"}, "guidance is 'scribbles'"),
        ({"guidance": True}, "guidance is True"),
        ({"guidance_prev_mask": True}, "guidance_prev_mask needs guidance"),
        ({"guidance": "clicks", "guidance_prev_mask": "yes"}, "must be true or false"),
        ({"guidance_zoom": False}, "guidance_zoom needs guidance"),
    ]:
        with pytest.raises(SpecError, match=why):
            ModelSpec.from_dict(tiny_segmenter(**bad))
    classifier = {"name": "c", "task": "classification", "encoder": "resnet18", "labels": ["x"]}
    with pytest.raises(SpecError, match="needs a segmentation task"):
        ModelSpec.from_dict({**classifier, "guidance": "clicks"})


def test_guidance_zoom_off_round_trips_and_its_twin_is_the_unguided_spec() -> None:
    whole = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_zoom=False))
    assert not whole.guidance_zoom and ModelSpec.from_dict(whole.to_dict()) == whole
    zoomed = ModelSpec.from_dict(GUIDED)
    assert "guidance_zoom" not in zoomed.to_dict()  # the default: specs written before it
    plain = ModelSpec.from_dict(tiny_segmenter())
    assert whole.unguided() == zoomed.unguided() == plain


def test_without_zoom_the_model_sees_the_whole_image_with_its_clicks() -> None:
    click = Click(100, 50, True)
    assert crop_box((200, 100), [click], zoom=False) == Box(0, 0, 200, 100)
    x = np.random.default_rng(0).random((200, 100, 1), np.float32)
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_zoom=False))
    net_input, box = model_input(x, spec, [click])
    assert box == Box(0, 0, 200, 100)
    zoomed, zbox = model_input(x, ModelSpec.from_dict(GUIDED), [click])
    assert zbox != box and not np.allclose(net_input[0], zoomed[0])  # the image, not a crop
    # The click's disc lands where the click is in the whole image: row 100/200, col 50/100.
    rows, cols = np.nonzero(net_input[1])
    assert abs(rows.mean() - 32) <= 1 and abs(cols.mean() - 32) <= 1


def test_guided_model_has_the_extra_channels_and_the_budget_counts_them() -> None:
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_prev_mask=True))
    model = build_model(spec)
    assert model.net.encoder.conv1.in_channels == 4
    assert (model.net.encoder.conv1.weight[:, 1:] == 0).all()  # guidance starts silent
    plain = estimate_memory(ModelSpec.from_dict(tiny_segmenter()))
    guided = estimate_memory(spec)
    assert guided.weights > plain.weights and guided.per_image > plain.per_image


def test_guided_model_loads_unguided_weights_and_answers_as_they_do(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = build_model(ModelSpec.from_dict(tiny_segmenter())).eval()
    file = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in plain.state_dict().items()}, str(file))
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_prev_mask=True))
    guided = load_weights(build_model(spec, pretrained=False), file).eval()
    x = torch.randn(2, 1, 64, 64)
    clicks = (torch.rand(2, 3, 64, 64) > 0.9).float()
    with torch.no_grad():
        want = plain(x)["mask"]
        assert torch.equal(guided(torch.cat([x, torch.zeros_like(clicks)], 1))["mask"], want)
        assert torch.equal(guided(torch.cat([x, clicks], 1))["mask"], want)  # zero weights
    # Old weights still load into their own (unguided) model, and a guided model's own weights
    # into a model of another guidance are refused with the tensor named.
    load_weights(build_model(ModelSpec.from_dict(tiny_segmenter()), pretrained=False), file)
    gfile = tmp_path / "guided.safetensors"
    save_file({k: v.contiguous() for k, v in guided.state_dict().items()}, str(gfile))
    with pytest.raises(CheckpointMismatch, match="conv1.weight"):
        load_weights(build_model(ModelSpec.from_dict(GUIDED), pretrained=False), gfile)


def test_pretrained_encoder_weights_leave_guidance_channels_at_zero(tmp_path: Path) -> None:
    torch.manual_seed(1)
    rgb = build_model(ModelSpec.from_dict(tiny_segmenter(in_channels=3, mean=[0.5] * 3,
                                                         std=[0.25] * 3)))  # fmt: skip
    file = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.net.encoder.state_dict().items()}, str(file))
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", encoder_weights=str(file)))
    conv = build_model(spec).net.encoder.conv1.weight
    assert torch.allclose(conv[:, :1], rgb.net.encoder.conv1.weight.sum(1, keepdim=True))
    assert (conv[:, 1:] == 0).all()


def test_encoding_puts_discs_in_the_class_channel_inside_the_crop() -> None:
    spec = ModelSpec.from_dict(
        tiny_segmenter(classes=["bg", "a", "b"], guidance="clicks", guidance_prev_mask=True)
    )
    clicks = [Click(20, 30, True, 2), Click(40, 10, False, 1)]
    maps = encode(clicks, Box(0, 0, 64, 64), spec)
    assert maps.shape == (6, 64, 64)
    assert maps[2, 20, 30] == 1 and maps[1, 40, 10] == 1  # pos_2, neg_1
    assert maps[0].sum() == 0 and maps[3].sum() == 0 and maps[4:].sum() == 0
    # A 32x32 crop doubles coordinates at the 64x64 input size.
    prev = np.zeros((128, 128), np.uint8)
    prev[10:20, 10:20] = 2
    maps = encode([Click(16, 16, True, 2)], Box(0, 0, 32, 32), spec, prev)
    assert maps[2, 32, 32] == 1
    assert maps[5, 30, 30] == 1 and maps[4].sum() == 0  # the previous mask's class 2


def test_crop_box_holds_clicks_and_previous_mask_and_enlarges_at_most_twice() -> None:
    assert crop_box((200, 100), []) == Box(0, 0, 200, 100)
    box = crop_box((200, 100), [Click(100, 50, True)])
    assert box.shape == (100, 50)  # half the image's side, its aspect ratio
    assert box.top <= 100 < box.bottom and box.left <= 50 < box.right
    prev = np.zeros((200, 100), np.uint8)
    prev[5:15, 5:15] = 1
    box = crop_box((200, 100), [Click(190, 90, False)], prev)
    assert box == Box(0, 0, 200, 100)  # both corners: the whole image
    x = np.random.default_rng(0).random((200, 100, 1), np.float32)
    spec = ModelSpec.from_dict(GUIDED)
    net_input, box = model_input(x, spec, [Click(100, 50, True)])
    assert net_input.shape == (3, 64, 64) and net_input[1].any() and not net_input[2].any()
    probs = np.zeros((2, 64, 64), np.float32)
    probs[1] = 1.0
    full = paste(probs, box, (200, 100), prev)
    assert full.shape == (2, 200, 100)
    assert full[1][box.slices].min() == 1.0
    assert full[1, 10, 10] == 1.0 and full[1, 199, 0] == 0.0  # outside: the previous mask


def test_robot_first_click_is_the_objects_deepest_point() -> None:
    truth = disc((64, 64), 30, 40, 10)
    click = first_click(truth)
    assert click is not None and click.positive
    assert abs(click.row - 30) <= 1 and abs(click.col - 40) <= 1
    assert first_click(np.zeros((64, 64), bool)) is None
    # An object at the image's edge: the edge counts as its border.
    edge = np.zeros((64, 64), bool)
    edge[:, :12] = True
    assert 5 <= first_click(edge).col <= 6  # type: ignore[union-attr]


def test_robot_clicks_the_largest_error_region_with_its_sign() -> None:
    truth = disc((64, 64), 32, 32, 14)
    pred = truth.copy()
    pred[disc((64, 64), 32, 32, 14) & (np.mgrid[:64, :64][1] > 36)] = False  # a large miss
    pred |= disc((64, 64), 5, 5, 3)  # a small false positive
    click = next_click(truth, pred)
    assert click is not None and click.positive and (truth & ~pred)[click.row, click.col]
    pred = truth | disc((64, 64), 55, 55, 8)  # only a false positive
    click = next_click(truth, pred)
    assert click is not None and not click.positive and (pred & ~truth)[click.row, click.col]
    assert next_click(truth, truth) is None
    assert dice(truth, truth) == 1.0 and dice(truth, np.zeros_like(truth)) == 0.0


def test_simulated_clicks_land_in_distinct_error_regions() -> None:
    truth = disc((64, 64), 32, 32, 12)
    prev = truth & (np.mgrid[:64, :64][1] < 32)  # the right half missed
    prev |= disc((64, 64), 5, 58, 4)  # and a false blob
    rng = np.random.default_rng(0)
    clicks = simulated_clicks(truth, prev, 5, 1, rng)
    assert len(clicks) == 2  # two error regions, each fixed by one click
    assert {c.positive for c in clicks} == {True, False}
    for c in clicks:
        assert (truth != prev)[c.row, c.col]


def test_guided_proposal_with_clicks_returns_a_full_size_mask() -> None:
    spec = ModelSpec.from_dict(tiny_segmenter(guidance="clicks", guidance_prev_mask=True))
    torch.manual_seed(0)
    engine = Engine(build_model(spec), spec, device="cpu", backend="torch")
    image = Image(np.random.default_rng(0).random((96, 80), np.float32), source="x.png")
    plain = engine.run([image])[0]  # no clicks: the usual path, empty guidance
    assert plain.probs is not None and plain.probs.shape == (2, 96, 80)
    prev = np.zeros((96, 80), np.uint8)
    proposal = propose_with_clicks(engine, image, "v1", [Click(40, 40, True)], prev)
    assert proposal.mask is not None and proposal.mask.shape == (96, 80)
    assert proposal.extra["clicks"] == [{"row": 40, "col": 40, "positive": True, "class_value": 1}]
    with pytest.raises(InferenceError, match="off the 80x96 image"):
        propose_with_clicks(engine, image, "v1", [Click(100, 40, True)])
    with pytest.raises(InferenceError, match="not a foreground class"):
        propose_with_clicks(engine, image, "v1", [Click(10, 10, True, 2)])
    with pytest.raises(InferenceError, match="previous mask is 8x8"):
        propose_with_clicks(engine, image, "v1", [Click(10, 10, True)], np.zeros((8, 8), np.uint8))
    unguided = ModelSpec.from_dict(tiny_segmenter())
    with pytest.raises(InferenceError, match="takes no clicks"):
        propose_with_clicks(Engine(build_model(unguided), unguided, "cpu"), image, "v1", [])
