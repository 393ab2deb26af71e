"""Errors a user can meet while running a model on an image."""

from __future__ import annotations


class InferenceError(Exception):
    """A model could not run on an image: names the image and the reason."""


class NotApplicable(InferenceError):
    """The model does not apply to this image (its spec's `applies_to`): not a failure."""
