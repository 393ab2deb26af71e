from __future__ import annotations

import numpy as np
import pytest
import torch

from medviewer.imaging.display import Image
from medviewer.inference.engine import Engine
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec

TINY = {
    "name": "tiny",
    "task": "segmentation+classification",
    "architecture": "Unet",
    "encoder": "resnet18",
    "classes": ["background", "finding"],
    "labels": ["finding"],
    "input": {"size": [64, 64]},
}


def tiny_engine(**changes: object) -> Engine:
    spec = ModelSpec.from_dict({**TINY, **changes})
    torch.manual_seed(0)
    return Engine(build_model(spec), spec, device="cpu", precision="fp32")


def grey(h: int, w: int, seed: int = 0) -> Image:
    px = np.random.default_rng(seed).integers(0, 4000, (h, w)).astype(np.uint16)
    return Image(pixels=px, source=f"test image {h}x{w}")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return tiny_engine()
