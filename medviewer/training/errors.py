"""Errors a user can meet when training; each says what to do about it."""

from __future__ import annotations


class TrainingError(Exception):
    """A problem the user can fix (no confirmed data, no active model, a full disk)."""
