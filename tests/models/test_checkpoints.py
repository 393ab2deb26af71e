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


def test_an_empty_pth_is_unreadable_not_an_index_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty.pth: not a readable weights file: EOFError"):
        load_weights(build_model(SPEC), path)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda t: torch.full_like(t, float("nan")), "holds 3,136 of 3,136 values that are NaN"),
        (lambda t: t.clone().index_fill_(0, torch.tensor([0]), float("inf")), "NaN or infinite"),
        (lambda t: t.double(), "is float64; weights must be float32, float16 or bfloat16"),
        (lambda t: t.to(torch.int8), "type differs 1: net.encoder.conv1.weight: file int8"),
    ],
)
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_that_cannot_run_name_the_file_and_tensor(
    tmp_path: Path, spoil, message: str, suffix: str
) -> None:
    """Issue 17: all-NaN (or int8/float64) weights loaded, and the model said "no finding"
    with probability NaN on every image."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in build_model(SPEC).state_dict().items()}
    key = "net.encoder.conv1.weight"
    state[key] = spoil(state[key]).contiguous()
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    with pytest.raises(ModelError) as e:
        load_weights(build_model(SPEC), path)
    assert str(e.value).startswith(str(path)) and key in str(e.value) and message in str(e.value)


def test_half_precision_weights_load() -> None:
    from medviewer.models.tensors import check_values

    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        check_values({"w": torch.ones(2, dtype=dtype), "n": torch.tensor(3)}, "w.safetensors")
