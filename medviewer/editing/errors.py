"""The error a user meets when an editing tool is given what it cannot work on."""

from __future__ import annotations


class EditInputError(ValueError):
    """Bad input to a volume or smart tool (shapes that differ, no seeds, a tolerance below
    zero, a slice outside the volume): the message says which and why."""
