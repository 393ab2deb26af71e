"""Errors a user can meet while running a model on an image."""

from __future__ import annotations


class InferenceError(Exception):
    """A model could not run on an image: names the image and the reason."""
