"""The one error de-identification raises."""

from __future__ import annotations


class DeidentificationError(Exception):
    """De-identified output cannot be made safely (the message names the file and why)."""
