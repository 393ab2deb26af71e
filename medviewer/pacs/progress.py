"""How a transfer goes, whichever protocol carries it: the progress callback, `Cancelled`, and
`Transfer` (what arrived or went, what failed). Apart from `remote` so that the protocol
modules (dicomweb, dimse, receiver) use them without importing `remote`, which imports
them in `connect` (no import cycle)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medviewer.pacs.errors import PacsError

# Called with (done, total) as instances arrive or leave; total is None when unknown.
Progress = Callable[[int, int | None], None]


class Cancelled(PacsError):
    """The user cancelled a transfer; what had arrived is kept."""


@dataclass
class Transfer:
    """How a transfer went: what was written or sent, and what failed with its reason."""

    files: list[Path] = field(default_factory=list)  # retrieved: written; sent: sent
    failed: list[str] = field(default_factory=list)  # one line per instance, naming it and why
    sop_uids: list[str] = field(default_factory=list)  # the instances sent (for send)
    notes: list[str] = field(default_factory=list)  # went, but the node warned (e.g. coerced)
