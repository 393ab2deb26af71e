"""The demo models' shipped weights (medviewer.demo.shipped): what `make demo-models` wrote
fits the full demo's specs, the full demo uses it instead of training, and every class is
learned."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors import safe_open

from medviewer.demo.build import build_demo
from medviewer.demo.cases import FULL, GUIDED, SMALL, model_specs, only
from medviewer.demo.shipped import (
    INDEX,
    WEIGHTS,
    half_round_trip,
    load_shipped,
    read_index,
    shipped_entry,
    unguided_base,
    write_shipped,
)
from medviewer.imaging.display import Image
from medviewer.inference.cam import field_of_view, grad_cam
from medviewer.inference.engine import Engine
from medviewer.inference.preprocess import to_channels
from medviewer.models.checkpoints import read_tensors
from medviewer.models.errors import ModelError
from medviewer.models.registry import build_model
from medviewer.models.versions import load_version
from medviewer.workspace import Workspace

QUIET = lambda message: None  # noqa: E731


def test_every_full_demo_model_ships_small_float16_weights() -> None:
    specs = model_specs(FULL)
    index = read_index()
    assert set(index) == {spec.name for spec in specs.values()}
    for spec in specs.values():
        entry = shipped_entry(spec)
        assert entry is not None, f"{spec.name}: no shipped weights for the demo's spec"
        path = WEIGHTS / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert path.stat().st_size < 4e6  # 0.9 million weights as float16, or fewer
        with safe_open(str(path), "pt") as f:
            floats = [f.get_tensor(k) for k in f.keys() if f.get_tensor(k).is_floating_point()]
        # float16, but for a value beyond its range (kept float32: shipped._half)
        assert floats and all(
            t.dtype == torch.float16 or t.abs().max() > torch.finfo(torch.float16).max
            for t in floats
        )
        assert all(torch.isfinite(t).all() for t in floats)
        model, registered, _ = load_shipped(spec)
        assert registered.encoder_weights is None and not model.training
        assert registered.input_size == (256, 256) and registered.encoder_depth == 4


def test_small_demo_and_changed_specs_have_no_shipped_weights() -> None:
    for spec in model_specs(SMALL).values():  # 64x64 inputs: trained at build time
        assert shipped_entry(spec) is None and load_shipped(spec) is None
    chest = model_specs(FULL)["chest"]
    assert shipped_entry(replace(chest, min_component_pixels=21)) is None
    assert shipped_entry(replace(chest, encoder_weights="/elsewhere.safetensors")) is not None


def test_write_and_load_round_trip_as_float16(tmp_path: Path) -> None:
    spec = model_specs(SMALL)["abdomen"]
    torch.manual_seed(0)
    model = build_model(spec, pretrained=False).eval()
    write_shipped(tmp_path, {spec.name: (model, spec, {"validation": {"score": 0.5}})})
    loaded, _, _ = load_shipped(spec, tmp_path)
    x = torch.randn(2, spec.network_channels, 64, 64)
    with torch.no_grad():
        ours, theirs = model(x)["mask"], loaded(x)["mask"]
    assert (ours.argmax(1) == theirs.argmax(1)).float().mean() > 0.99
    assert (tmp_path / f"{spec.name}.safetensors").stat().st_size < 0.6 * sum(
        t.numel() * 4 for t in model.state_dict().values()
    )


def test_a_damaged_shipped_file_is_a_clear_error(tmp_path: Path) -> None:
    spec = model_specs(SMALL)["abdomen"]
    write_shipped(tmp_path, {spec.name: (build_model(spec, pretrained=False), spec, {})})
    path = tmp_path / f"{spec.name}.safetensors"
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(ModelError, match=str(path)):
        load_shipped(spec, tmp_path)
    (tmp_path / INDEX).write_text("{not json")
    assert load_shipped(spec, tmp_path) is None  # no index: the demo trains instead


@pytest.fixture(scope="module")
def abdomen_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws_dir = tmp_path_factory.mktemp("shipped") / "abdomen"
    build_demo(ws_dir, progress=QUIET, size=only(FULL, "abdomen"))
    return ws_dir


def test_full_demo_uses_shipped_weights_and_learns_every_kidney_class(abdomen_demo: Path) -> None:
    """Judged on this build's validation slices, which the shipped model never trained on."""
    with Workspace.open(abdomen_demo, readonly=True) as ws:
        v1 = ws.models.active("abdomen-kidneys")
        assert v1.version == "v1" and "shipped" in v1.metrics["note"]
        assert v1.metrics["training"]["shipped"]["by"] == "make demo-models"
        validation = v1.metrics["validation"]
    assert validation["images"] > 0
    dice = validation["dice"]
    assert set(dice) == {"left kidney", "right kidney", "lesion"}
    assert min(dice.values()) >= 0.3, dice  # the small lesion class is learned, not background


def test_fundus_heatmap_is_fine_and_stays_on_the_retina(tmp_path: Path) -> None:
    ws_dir = tmp_path / "fundus"
    build_demo(ws_dir, progress=QUIET, size=only(FULL, "fundus"))
    with Workspace.open(ws_dir, readonly=True) as ws:
        model, spec, _ = load_version(ws, "fundus-findings")
        path = next(r.path for r in ws.images() if r.path.endswith(".jpg"))
    image = Image(cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB), source=path)
    engine = Engine(model, spec, torch.device("cpu"))
    with torch.no_grad():
        features = model.encoder(torch.zeros(1, 3, *spec.input_size))[-1]
    assert features.shape[-2:] == (16, 16)
    fov = field_of_view(to_channels(image, spec))
    assert 0.3 < (fov > 0).mean() < 0.95  # a round retina on a black surround
    for cam in grad_cam(engine, image).values():
        assert cam.shape == fov.shape and cam[fov == 0].max() == 0
        assert np.abs(np.diff(cam, axis=1)).max() < 0.2  # smooth: 16x16 blocks would step ~1


def test_guided_models_ship_with_the_unguided_weights_they_started_from() -> None:
    specs = model_specs(FULL)
    for task in GUIDED:
        spec = specs[task]
        assert spec.guided and spec.guidance_prev_mask
        entry = shipped_entry(spec)
        assert entry is not None
        base, base_entry = unguided_base(spec)
        assert base == WEIGHTS / f"{spec.name}.unguided.safetensors"
        assert base_entry == entry["training"]["unguided"]
        assert hashlib.sha256(base.read_bytes()).hexdigest() == base_entry["sha256"]
        assert base_entry["spec"]["name"] == spec.name and "guidance" not in base_entry["spec"]
        assert base_entry["validation"]["mean_dice"] > 0.85  # what the guided model began as
        clicks = entry["validation"]["clicks"]
        assert clicks["objects"] > 0 and set(clicks["dice_after"]) == {"0", "1", "3", "5"}
    assert unguided_base(specs["fundus"]) is None  # takes no clicks


def test_write_shipped_keeps_other_entries_and_the_unguided_start(tmp_path: Path) -> None:
    spec = replace(model_specs(SMALL)["abdomen"], guidance="clicks", guidance_prev_mask=True)
    base_spec = spec.unguided()
    torch.manual_seed(0)
    start, state, key = half_round_trip(
        base_spec, build_model(base_spec, pretrained=False).state_dict(), tmp_path / "ws"
    )
    assert key["name"] == spec.name and all(v.dtype != torch.float16 for v in state.values())
    metrics = {"training": {"unguided": {"source": str(start), "spec": key, "validation": {}}}}
    model = build_model(spec, pretrained=False)
    index = write_shipped(tmp_path, {spec.name: (model, spec, metrics)}, keep={"other": {"a": 1}})
    assert index["other"] == {"a": 1}
    kept = tmp_path / f"{spec.name}.unguided.safetensors"
    assert kept.read_bytes() == start.read_bytes()
    assert unguided_base(spec, tmp_path) == (kept, index[spec.name]["training"]["unguided"])
    assert shipped_entry(spec, tmp_path) is not None
    kept.unlink()  # its start gone: a guided model is then trained from scratch
    assert unguided_base(spec, tmp_path) is None


def test_weights_beyond_float16_stay_float32_and_load_back(tmp_path: Path) -> None:
    spec = model_specs(SMALL)["abdomen"]
    model = build_model(spec, pretrained=False)
    name, bn = next((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = 1e6  # float16 ends at 65504: as float16 it would be infinite
    index = write_shipped(tmp_path, {spec.name: (model, spec, {})})
    stored = dict(read_tensors(tmp_path / index[spec.name]["file"]))
    big = [k for k, v in stored.items() if v.dtype == torch.float32]
    assert big == [f"{name}.running_var"]
    loaded = load_shipped(spec, tmp_path)
    assert loaded is not None
    back = dict(loaded[0].named_buffers())[big[0]]
    assert back[0].item() == 1e6 and torch.isfinite(back).all()


def test_weights_that_are_not_finite_are_refused(tmp_path: Path) -> None:
    spec = model_specs(SMALL)["abdomen"]
    model = build_model(spec, pretrained=False)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = float("nan")  # a model that diverged
    with pytest.raises(ValueError, match="running_var is not finite"):
        write_shipped(tmp_path, {spec.name: (model, spec, {})})
    assert not (tmp_path / INDEX).exists()
