"""Checkpoints: safetensors weights + the spec + metrics in one folder. Never unpickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from medviewer.atomic import atomic_write
from medviewer.models.registry import MedModel, add_guidance_weights, build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.tensors import read_tensors, report_mismatch

WEIGHTS = "weights.safetensors"
SPEC = "spec.json"
METRICS = "metrics.json"


def save_checkpoint(
    folder: Path, model: nn.Module, spec: ModelSpec, metrics: dict[str, Any] | None = None
) -> Path:
    """Write weights, spec and metrics into `folder` (created); files appear atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, str(tmp)))
    atomic_write(folder / SPEC, lambda tmp: tmp.write_text(spec.to_json()))
    atomic_write(folder / METRICS, lambda tmp: tmp.write_text(json.dumps(metrics or {}, indent=2)))
    return folder


def load_weights(model: MedModel, path: Path) -> MedModel:
    """Load a weights file into `model`; a guided model also takes its unguided model's weights
    (guidance channels at zero: it answers as that model until trained with clicks)."""
    state = read_tensors(path)
    add_guidance_weights(model, state)
    problem = report_mismatch(model.state_dict(), state, path)
    if problem:
        raise problem
    model.load_state_dict(state)
    return model


def load_checkpoint(folder: Path) -> tuple[MedModel, ModelSpec, dict[str, Any]]:
    """The model of a checkpoint folder, in eval mode on the CPU."""
    spec = ModelSpec.load(folder / SPEC)
    model = load_weights(build_model(spec, pretrained=False), folder / WEIGHTS)
    metrics_path = folder / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return model.eval(), spec, metrics
