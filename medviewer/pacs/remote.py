"""One interface to a PACS node, whichever protocol reaches it: `connect` picks DICOMweb (the
node has a URL) or DIMSE (AE title@host:port). The CLI, the transfers and the app call only this.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from medviewer.pacs.nodes import PacsNode
from medviewer.pacs.progress import Cancelled, Progress, Transfer  # the interface's, too
from medviewer.pacs.query import SeriesRecord, StudyQuery, StudyRecord

__all__ = ["Cancelled", "PacsConnection", "Progress", "Transfer", "connect"]


class PacsConnection(Protocol):
    node: PacsNode

    def echo(self) -> float:
        """Seconds a trivial exchange took (C-ECHO or a one-study QIDO); PacsError if none."""
        ...

    def find_studies(self, query: StudyQuery, limit: int | None = None) -> list[StudyRecord]: ...

    def find_series(self, study_uid: str) -> list[SeriesRecord]: ...

    def retrieve(
        self,
        folder: Path,
        study_uid: str,
        series_uid: str | None = None,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Transfer:
        """Write the study's (or one series') instances as DICOM files under `folder`.

        Each file is written whole (medviewer.atomic) before it is counted; a cancel raises
        Cancelled after the instance in flight, keeping what arrived.
        """
        ...

    def store(
        self,
        files: Sequence[Path],
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Transfer:
        """Send DICOM files to the node (STOW-RS or C-STORE); per-file failures are collected."""
        ...


def connect(node: PacsNode) -> PacsConnection:
    """DICOMweb when the node has a URL, else DIMSE."""
    if node.url:
        from medviewer.pacs.dicomweb import DicomWebNode  # requests only when talking

        return DicomWebNode(node)
    from medviewer.pacs.dimse import DimseNode  # pynetdicom only when talking

    return DimseNode(node)
