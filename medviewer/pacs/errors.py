"""The one error PACS connectivity raises."""

from __future__ import annotations


class PacsError(Exception):
    """A PACS node cannot be used or did not answer; the message names the node and why."""
