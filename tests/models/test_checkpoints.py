"""Checkpoints are safetensors; weights of another architecture name the tensors that differ."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medviewer.models.checkpoints import load_checkpoint, load_weights, save_checkpoint
from medviewer.models.errors import CheckpointMismatch, ModelError
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec

SPEC = ModelSpec.from_dict(
    {
        "name": "tiny",
        "task": "segmentation",
        "architecture": "Unet",
        "encoder": "resnet18",
        "classes": ["background", "a", "b"],
        "input": {"size": [64, 64]},
    }
)


def test_save_and_load_gives_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    save_checkpoint(tmp_path / "v1", model, SPEC, {"dice": {"a": 0.5}})
    assert sorted(p.name for p in (tmp_path / "v1").iterdir()) == [
        "metrics.json", "spec.json", "weights.safetensors",
    ]  # fmt: skip
    loaded, spec, metrics = load_checkpoint(tmp_path / "v1")
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x)["mask"], loaded(x)["mask"])
    assert spec == SPEC and metrics == {"dice": {"a": 0.5}}


def test_other_architecture_lists_differing_tensors(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "v1", build_model(SPEC), SPEC)
    other = ModelSpec.from_dict({**SPEC.to_dict(), "classes": ["background", "a"]})
    with pytest.raises(CheckpointMismatch) as e:
        load_weights(build_model(other), tmp_path / "v1" / "weights.safetensors")
    text = str(e.value)
    assert "weights.safetensors: weights do not fit the spec's model" in text
    assert "shape differs 2: net.segmentation_head.0.bias: file (3,), model (1,)" in text


def test_pickle_is_never_executed(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ModelError, match="refused: holds more than plain tensors"):
        load_weights(build_model(SPEC), path)


def test_truncated_and_missing_weights(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "v1", build_model(SPEC), SPEC)
    weights = tmp_path / "v1" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="not a readable weights file"):
        load_checkpoint(tmp_path / "v1")
    with pytest.raises(ModelError, match="weights file not found"):
        load_weights(build_model(SPEC), tmp_path / "none.safetensors")


def test_encoder_weights_from_local_file(tmp_path: Path) -> None:
    donor = build_model(SPEC)
    path = tmp_path / "enc.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, str(path))
    model = build_model(ModelSpec.from_dict({**SPEC.to_dict(), "encoder_weights": str(path)}))
    for k, v in donor.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v)
