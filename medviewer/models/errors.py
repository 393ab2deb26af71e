"""Errors a user can meet with models: each names the file and the reason."""

from __future__ import annotations


class ModelError(Exception):
    """Base of the model errors."""


class SpecError(ModelError):
    """A model spec is invalid: names the file, the field and what is allowed."""


class ModelTooLarge(SpecError):
    """A spec's sizes, or the memory its model would take, are over the model budget
    (medviewer.models.model_budget): names the setting to raise."""


class CheckpointMismatch(ModelError):
    """Weights that do not fit the spec's architecture: lists the tensors that differ."""


class UnusableWeights(ModelError):
    """Weights a model cannot run on (not finite, or not float16/bfloat16/float32): names the
    file and the tensor."""
