"""Errors a user can meet with models: each names the file and the reason."""

from __future__ import annotations


class ModelError(Exception):
    """Base of the model errors."""


class SpecError(ModelError):
    """A model spec is invalid: names the file, the field and what is allowed."""


class CheckpointMismatch(ModelError):
    """Weights that do not fit the spec's architecture: lists the tensors that differ."""
