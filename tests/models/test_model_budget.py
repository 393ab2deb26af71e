"""The model budget: a spec's sizes are bounded at parse time, and the memory a model takes is
estimated (weights, activations per image) before it is built or a batch run (issue 17)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from medviewer.config import Settings
from medviewer.models.errors import ModelTooLarge
from medviewer.models.model_budget import (
    DECODER_CHANNELS_ENV,
    INPUT_PIXELS_ENV,
    MODEL_MB_ENV,
    MemoryEstimate,
    ModelBudget,
)
from medviewer.models.registry import MedModel, build_model, estimate_memory
from medviewer.models.spec import ModelSpec
from tests.specs import tiny_segmenter


@pytest.mark.parametrize(
    "fields",
    [
        {"input_size": [1024, 1024]},
        {"input_size": [2048, 2048], "large_image": "tile"},  # tiles are the input size
        {"decoder_channels": [256, 128, 64, 32, 16]},  # smp's default widths
    ],
)
def test_real_models_are_within_the_default_budget(fields: dict) -> None:
    data = {k: v for k, v in tiny_segmenter().items() if k != "input"}
    ModelSpec.from_dict({**data, **fields}, "spec.json", ModelBudget())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"input_size": [4096, 4096]},  # took 7.6 GB
            f"input size 4096x4096 is 16,777,216 pixels, over the model budget of 4,194,304 "
            f"({INPUT_PIXELS_ENV})",
        ),
        (
            {"decoder_channels": [100000, 128, 64, 32, 16]},  # asked for 360 GB
            f"decoder_channels 100,000 is over the model budget of 1,024 channels "
            f"({DECODER_CHANNELS_ENV})",
        ),
    ],
)
def test_spec_sizes_over_the_budget_are_refused_naming_the_setting(
    fields: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {k: v for k, v in tiny_segmenter().items() if k != "input"}
    with pytest.raises(ModelTooLarge) as e:
        ModelSpec.from_dict({**data, **fields}, "spec.json")
    assert str(e.value).startswith("spec.json: ") and message in str(e.value)
    monkeypatch.setenv(INPUT_PIXELS_ENV, str(4096 * 4096))
    monkeypatch.setenv(DECODER_CHANNELS_ENV, "100000")
    ModelSpec.from_dict({**data, **fields}, "spec.json")  # raised: accepted


def test_the_estimate_counts_weights_and_scales_with_the_input() -> None:
    small = ModelSpec.from_dict(tiny_segmenter())
    large = ModelSpec.from_dict({**tiny_segmenter(), "input": {"size": [256, 256]}})
    a, b = estimate_memory(small), estimate_memory(large)
    assert a is not None and b is not None
    model = build_model(small)
    real = sum(t.numel() * 4 for t in [*model.parameters(), *model.buffers()])
    assert abs(a.weights - real) <= 8 * 1024  # the int64 BatchNorm counters count as 4 bytes
    assert a.weights == b.weights and 12 < b.per_image / a.per_image < 20  # 16x the pixels


def test_a_model_over_the_memory_budget_is_refused_before_it_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = ModelSpec.from_dict({**tiny_segmenter(), "decoder_channels": [1024, 1024, 8, 8, 8]})
    built: list[str] = []  # the device each MedModel was built on: meta costs no memory
    real_init = MedModel.__init__

    def spy(self: MedModel, spec: ModelSpec) -> None:
        built.append(torch.empty(0).device.type)
        real_init(self, spec)

    monkeypatch.setattr(MedModel, "__init__", spy)
    monkeypatch.setenv(MODEL_MB_ENV, "64")
    with pytest.raises(ModelTooLarge, match=rf"model lesion: about .* MB to run 1 image.*"
                       rf"over the model budget of 64 MB \({MODEL_MB_ENV}\)"):  # fmt: skip
        build_model(spec)
    assert built == ["meta"]


def test_the_budget_picks_the_largest_batch_that_fits() -> None:
    budget = ModelBudget(model_bytes=1000)
    assert budget.largest_batch(MemoryEstimate(weights=100, per_image=200), 8, "m") == 4
    assert budget.largest_batch(MemoryEstimate(weights=100, per_image=10), 8, "m") == 8
    with pytest.raises(ModelTooLarge, match=r"m: about 0 MB to run 1 image"):
        budget.largest_batch(MemoryEstimate(weights=100, per_image=1000), 8, "m")


def test_settings_hold_the_model_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_MB_ENV, "512")
    monkeypatch.setenv(INPUT_PIXELS_ENV, "1048576")
    budget = Settings.from_env().model_budget
    assert (budget.model_bytes, budget.input_pixels) == (512 << 20, 1 << 20)
    assert budget.decoder_channels == ModelBudget().decoder_channels
    monkeypatch.setenv(MODEL_MB_ENV, "lots")
    with pytest.raises(ValueError, match=f"{MODEL_MB_ENV} must be a whole number above 0"):
        ModelBudget.from_env()


def test_settings_load_the_budget_without_torch() -> None:
    code = "import sys, medviewer.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_estimate_leaves_torch_random_state_alone() -> None:
    """A seeded build gets the same initial weights whether or not the budget was checked."""
    spec = ModelSpec.from_dict(tiny_segmenter())
    torch.manual_seed(0)
    plain = MedModel(spec).state_dict()
    torch.manual_seed(0)
    assert estimate_memory(spec) is not None
    checked = MedModel(spec).state_dict()
    assert all(torch.equal(plain[k], checked[k]) for k in plain)
