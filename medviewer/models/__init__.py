"""Models without Qt: specs, the smp registry and safetensors checkpoints."""

from medviewer.models.checkpoints import load_checkpoint, load_weights, save_checkpoint
from medviewer.models.errors import CheckpointMismatch, ModelError, SpecError
from medviewer.models.registry import MedModel, build_model
from medviewer.models.spec import ClassInfo, Gate, ModelSpec

__all__ = [
    "CheckpointMismatch",
    "ClassInfo",
    "Gate",
    "MedModel",
    "ModelError",
    "ModelSpec",
    "SpecError",
    "build_model",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
]
