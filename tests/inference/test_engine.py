"""The engine: outputs at native size, deterministic on the CPU, clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medviewer.imaging.display import Image
from medviewer.inference.device import autocast_dtype, pick_device
from medviewer.inference.engine import Engine
from medviewer.inference.errors import InferenceError
from medviewer.inference.preprocess import tiles
from medviewer.inference.proposal import propose
from medviewer.models.errors import ModelTooLarge
from medviewer.models.model_budget import ModelBudget
from medviewer.models.registry import build_model, estimate_memory
from medviewer.models.spec import ModelSpec
from tests.inference.conftest import TINY, grey, tiny_engine


def test_outputs_at_native_size_for_any_shape(engine: Engine) -> None:
    outs = engine.run([grey(100, 80), grey(40, 300, seed=1)])
    assert outs[0].probs.shape == (2, 100, 80) and outs[1].probs.shape == (2, 40, 300)
    assert np.allclose(outs[0].probs.sum(axis=0), 1, atol=1e-5)
    assert set(outs[0].label_probs) == {"finding"}


def test_cpu_results_are_deterministic(engine: Engine) -> None:
    a = propose(engine, [grey(96, 96)], "1")[0]
    b = propose(tiny_engine(), [grey(96, 96)], "1")[0]  # a fresh engine, same weights
    assert np.array_equal(a.mask, b.mask) and a.label_probs == b.label_probs


def test_batching_does_not_change_results(engine: Engine) -> None:
    images = [grey(64, 64, seed=s) for s in range(5)]
    one_by_one = [engine.run([im])[0].probs for im in images]
    engine.batch_size = 4
    batched = [o.probs for o in engine.run(images)]
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(one_by_one, batched, strict=True))


def test_tiling_covers_large_images_at_native_resolution() -> None:
    eng = tiny_engine(input={"size": [64, 64], "large_image": "tile", "tile_overlap": 0.25})
    out = eng.run([grey(150, 130)])[0]
    assert out.probs.shape == (2, 150, 130) and np.isfinite(out.probs).all()
    small = eng.run([grey(40, 50)])[0]  # smaller than a tile: padded, cropped back
    assert small.probs.shape == (2, 40, 50)
    corners = tiles(150, 130, (64, 64), 0.25)
    assert corners[0] == (0, 0) and corners[-1] == (150 - 64, 130 - 64)


def test_classification_only_model() -> None:
    eng = tiny_engine(task="classification", labels=["dr", "glaucoma", "normal"], in_channels=3)
    rgb = Image(pixels=np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    (p,) = propose(eng, [rgb], "1")
    assert p.mask is None and set(p.label_probs) == {"dr", "glaucoma", "normal"}
    assert 0 <= p.uncertainty <= 1


def test_nan_pixels_named(engine: Engine) -> None:
    px = np.zeros((64, 64), np.float32)
    px[3, 3] = np.nan
    with pytest.raises(InferenceError, match="scan.dcm: image contains NaN or infinite"):
        engine.run([Image(pixels=px, source="scan.dcm")])


def test_image_too_small(engine: Engine) -> None:
    with pytest.raises(InferenceError, match=r"image is 16x20; this model needs at least 32x32"):
        engine.run([grey(20, 16)])


def test_wrong_channel_count() -> None:
    eng = tiny_engine(in_channels=2, normalization={"mean": [0.5, 0.5], "std": [0.2, 0.2]})
    with pytest.raises(InferenceError, match="image has 1 channel"):
        eng.run([grey(64, 64)])


def test_grey_to_rgb_model_converts() -> None:
    eng = tiny_engine(in_channels=3, normalization={"mean": [0.5] * 3, "std": [0.2] * 3})
    assert eng.run([grey(64, 64)])[0].probs.shape == (2, 64, 64)


def test_device_choice() -> None:
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(InferenceError, match="no CUDA GPU is available"):
            pick_device("cuda")
    with pytest.raises(InferenceError, match="unknown device 'tpu'"):
        pick_device("tpu")
    assert autocast_dtype(torch.device("cpu"), "fp32") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16


def test_gpu_oom_retries_with_smaller_batch(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = Engine.forward

    def flaky(self: Engine, batch: np.ndarray) -> dict:
        calls.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(self, batch)

    monkeypatch.setattr(Engine, "forward", flaky)
    engine.batch_size = 4
    outs = engine.run([grey(64, 64, seed=s) for s in range(3)])
    assert len(outs) == 3 and calls[:2] == [3, 2] and calls[-1] == 1

    monkeypatch.setattr(
        Engine, "forward", lambda self, b: (_ for _ in ()).throw(torch.OutOfMemoryError())
    )
    with pytest.raises(InferenceError, match="out of memory on cpu even with one image"):
        engine.run([grey(64, 64)])


def test_no_images_no_work(engine: Engine) -> None:
    assert engine.run([]) == []


def test_the_cpu_batch_is_cut_to_the_model_budget() -> None:
    """A batch of large inputs must not pass the memory budget (issue 17: a 4096x4096 spec
    took 7.6 GB); the estimate is made before anything runs."""
    spec = ModelSpec.from_dict({**TINY, "input": {"size": [128, 128]}})
    estimate = estimate_memory(spec)
    assert estimate is not None
    budget = ModelBudget(model_bytes=estimate.total(2) + 1)
    engine = Engine(build_model(spec), spec, device="cpu", budget=budget)
    assert engine.batch_size == 2
    assert (
        Engine(build_model(spec), spec, device="cpu", batch_size=1, budget=budget).batch_size == 1
    )
    with pytest.raises(ModelTooLarge, match="MEDVIEWER_MAX_MODEL_MB"):
        Engine(build_model(spec), spec, device="cpu", budget=ModelBudget(model_bytes=1 << 20))
