"""Tiny model specs the tests share (64x64 inputs: fast on any CPU)."""

from __future__ import annotations

from typing import Any


def tiny_segmenter(name: str = "lesion", **fields: Any) -> dict[str, Any]:
    """A two-class U-Net spec as JSON-like data; `fields` override or add spec fields."""
    return {
        "name": name,
        "task": "segmentation",
        "architecture": "Unet",
        "encoder": "resnet18",
        "classes": ["background", "lesion"],
        "input": {"size": [64, 64]},
        **fields,
    }
