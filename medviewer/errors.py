"""Errors that belong to no one package."""

from __future__ import annotations


class SettingError(ValueError):
    """A MEDVIEWER_* environment setting that cannot be read; names the variable and value."""
