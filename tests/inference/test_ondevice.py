"""Post-processing on the device (torch) against the numpy / OpenCV post-processing it replaces;
the GPU engine where there is a GPU."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from medviewer.imaging.display import Image
from medviewer.inference.engine import Engine, RawOutput
from medviewer.inference.errors import InferenceError
from medviewer.inference.feed import BatchFeed
from medviewer.inference.ondevice import decide
from medviewer.inference.postprocess import label_map, pixel_entropy
from medviewer.inference.proposal import make_proposal, propose
from medviewer.models.spec import ModelSpec
from tests.inference.conftest import TINY, grey, tiny_engine


def smooth_probs(classes: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """(classes, h, w) probabilities that vary smoothly, as a network's do."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0, 3, (classes, 5, 5)).astype(np.float32)
    logits = np.stack([cv2.resize(c, size[::-1], interpolation=cv2.INTER_CUBIC) for c in coarse])
    e = np.exp(logits - logits.max(axis=0))
    return e / e.sum(axis=0)


def numpy_path(probs: np.ndarray, native: tuple[int, int], spec: ModelSpec) -> tuple:
    """What the engine did before: OpenCV resize of the float maps, then numpy."""
    h, w = native
    resized = cv2.resize(probs.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR)
    resized = resized.transpose(2, 0, 1)
    labels = label_map(resized, spec)
    counts = np.bincount(labels.ravel(), minlength=probs.shape[0])
    return resized, labels, pixel_entropy(resized), counts


@pytest.mark.parametrize("classes", [2, 4])
def test_on_device_postprocess_equals_numpy_on_cpu(classes: int) -> None:
    names = ["background", *[f"c{k}" for k in range(1, classes)]]
    spec = ModelSpec.from_dict({**TINY, "task": "segmentation", "classes": names, "labels": []})
    batch = np.stack([smooth_probs(classes, (64, 64), seed) for seed in range(4)])
    natives = [(64, 64), (100, 80), (40, 300), (100, 80)]  # same size twice: resized together
    got = decide({"mask": torch.from_numpy(batch)}, natives, spec, keep_probs=True).finish()
    for k, native in enumerate(natives):
        resized, labels, entropy, counts = numpy_path(batch[k], native, spec)
        d = got[k]
        assert d.labels.dtype == np.uint8 and d.labels.shape == native
        assert np.abs(d.probs - resized).max() < 1e-5
        assert np.mean(d.labels == labels) >= 0.9999
        assert d.uncertainty == pytest.approx(entropy, abs=1e-5)
        assert np.abs(d.class_pixels - counts).max() <= 0.0001 * labels.size


def test_engine_label_maps_equal_the_float_path(engine: Engine) -> None:
    """make_proposal from the engine's label map and uncertainty == from the float maps."""
    images = [grey(64, 64, seed=3), grey(100, 80, seed=4), grey(40, 300, seed=5)]
    for raw in engine.run(images):
        fast = make_proposal(engine, raw, "1")
        slow = make_proposal(engine, RawOutput(raw.probs, raw.label_probs), "1")
        assert np.array_equal(fast.mask, slow.mask)
        assert fast.uncertainty == pytest.approx(slow.uncertainty, abs=1e-6)
        assert fast.extra["class_pixels"] == np.bincount(slow.mask.ravel(), minlength=2).tolist()


def test_cpu_keeps_float_maps_unless_told() -> None:
    assert tiny_engine().run([grey(64, 64)])[0].probs is not None
    spec = ModelSpec.from_dict(TINY)
    lean = Engine(tiny_engine().model, spec, device="cpu", precision="fp32", keep_probs=False)
    out = lean.run([grey(64, 64)])[0]
    assert out.probs is None and out.labels.shape == (64, 64) and out.uncertainty is not None


@pytest.mark.gpu
def test_gpu_engine_agrees_with_cpu_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU pipeline (prefetch, pinned copies, post-processing on the device) gives the CPU's
    masks. The tiny model is untrained: 1 % of its pixels lie within 1e-3 of the threshold, so
    fp32 is compared without TF32, and bf16 only for sanity (the bench checks bf16 on a trained
    model: 99.9 % of pixels)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    cpu = tiny_engine()
    spec = cpu.spec
    gpu32 = Engine(tiny_engine().model, spec, device="cuda", precision="fp32")
    gpu = Engine(tiny_engine().model, spec, device="cuda")  # bf16 / fp16 autocast
    images = [grey(64, 64, seed=s) for s in range(7)] + [grey(300, 200, seed=9)]
    ref = propose(cpu, images, "1")
    for eng, floor in ((gpu32, 0.999), (gpu, 0.98)):
        out = propose(eng, images, "1")
        agree = np.mean([np.mean(a.mask == b.mask) for a, b in zip(ref, out, strict=True)])
        assert agree >= floor
        assert [p.mask.shape for p in out] == [p.mask.shape for p in ref]
        assert all(abs(a.uncertainty - b.uncertainty) < 0.02 for a, b in zip(ref, out, strict=True))
    assert gpu.batch_size >= 1 and gpu.batch_size & (gpu.batch_size - 1) == 0  # power of two
    assert gpu.run(images[:1])[0].probs is None  # float maps stay on the GPU


@pytest.mark.gpu
def test_on_device_postprocess_on_gpu_equals_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    spec = ModelSpec.from_dict({**TINY, "task": "segmentation", "labels": []})
    batch = torch.from_numpy(np.stack([smooth_probs(2, (64, 64), s) for s in range(3)]))
    natives = [(64, 64), (130, 90), (130, 90)]
    cpu = decide({"mask": batch}, natives, spec).finish()
    gpu = decide({"mask": batch.cuda()}, natives, spec).finish()
    for a, b in zip(cpu, gpu, strict=True):
        assert np.mean(a.labels == b.labels) >= 0.9999
        assert a.uncertainty == pytest.approx(b.uncertainty, abs=1e-5)


def test_prefetching_feed_gives_the_same_batches_and_errors_in_order() -> None:
    """The GPU's feed (images prepared on threads, batches ahead) against the CPU's (inline)."""
    spec = ModelSpec.from_dict(TINY)
    images = [grey(64, 64, seed=s) for s in range(5)] + [grey(100, 80, seed=5), grey(40, 300)]
    inline = list(BatchFeed(images, spec, 3))
    ahead = list(BatchFeed(images, spec, 3, workers=2))
    assert [b.start for b in ahead] == [0, 3, 6] == [b.start for b in inline]
    for a, b in zip(inline, ahead, strict=True):
        assert a.sizes == b.sizes and torch.equal(a.x, b.x)
    assert ahead[2].sizes == [(40, 300)]

    bad = Image(pixels=np.full((64, 64), np.nan, np.float32), source="bad.dcm")
    feed = iter(BatchFeed([*images[:3], bad, *images[3:]], spec, 2, workers=2))
    assert next(feed).start == 0
    with pytest.raises(InferenceError, match="bad.dcm: image contains NaN"):
        next(feed)
