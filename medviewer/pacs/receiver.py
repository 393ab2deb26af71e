"""The instances a C-GET or C-MOVE sends us, each written whole under the retrieve folder.

Laid out `<folder>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm` through `medviewer.atomic`, and
counted for progress only once durable. Once the user cancels, the peer is asked to stop
(once) and instances still arriving are refused, not written.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from medviewer.atomic import atomic_write_bytes
from medviewer.pacs.progress import Progress, Transfer

# A UID from the network names a folder and a file: digits and dots only, never "../".
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_SUCCESS = 0x0000
# No C-STORE status means "cancelled"; "out of resources" is the nearest refusal.
_REFUSED = 0xA700
_CANNOT_UNDERSTAND = 0xC000


class Receiver:
    """The C-STORE handler of one retrieve: writes, counts, reports progress, honours cancel.

    `handle_store` may run on pynetdicom's threads (C-MOVE: our Storage SCP's association),
    hence the lock.
    """

    def __init__(
        self, folder: Path, progress: Progress | None, cancel: threading.Event | None
    ) -> None:
        self.folder = Path(folder)
        self.transfer = Transfer()
        self.total: int | None = None  # from the pending responses' sub-operation counts
        self.failed_uids: set[str] = set()
        self.on_cancel: Callable[[], None] = lambda: None  # sends C-CANCEL, once
        self._progress = progress
        self._cancel = cancel or threading.Event()
        self._cancel_sent = False
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancel(self) -> None:
        """When the user has cancelled, ask the peer to stop (the first time only)."""
        if not self._cancel.is_set():
            return
        with self._lock:
            if self._cancel_sent:
                return
            self._cancel_sent = True
        self.on_cancel()

    def pending(self, status: Dataset) -> None:
        """A pending C-GET/C-MOVE response: remaining + done sub-operations make the total."""
        remaining = status.get("NumberOfRemainingSuboperations")
        if remaining is None:
            return
        done = (
            status.get("NumberOfCompletedSuboperations"),
            status.get("NumberOfFailedSuboperations"),
            status.get("NumberOfWarningSuboperations"),
        )
        self.total = int(remaining) + sum(int(n or 0) for n in done)

    def handle_store(self, event: Any) -> int:
        """pynetdicom's EVT_C_STORE handler: the C-STORE status to answer."""
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        if self._cancel.is_set():
            self.check_cancel()
            return _REFUSED
        try:
            series_uid = _raw_text(event.dataset, "SeriesInstanceUID")
        except Exception as e:  # noqa: BLE001 - any undecodable instance fails alone
            return self._fail(sop_uid, f"cannot be decoded ({e})", _CANNOT_UNDERSTAND)
        for uid in (series_uid, sop_uid):
            if len(uid) > 64 or not _UID.fullmatch(uid):
                return self._fail(sop_uid, f"UID {uid!r} is not a valid UID", _CANNOT_UNDERSTAND)
        path = self.folder / series_uid / f"{sop_uid}.dcm"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, event.encoded_dataset())
        except OSError as e:
            return self._fail(sop_uid, f"cannot be written to {path} ({e.strerror or e})", _REFUSED)
        with self._lock:
            self.transfer.files.append(path)
            if self._progress is not None:
                self._progress(len(self.transfer.files), self.total)
        self.check_cancel()  # the instance in flight is kept; the peer is asked to stop now
        return _SUCCESS

    def _fail(self, sop_uid: str, reason: str, status: int) -> int:
        with self._lock:
            self.failed_uids.add(sop_uid)
            self.transfer.failed.append(f"instance {sop_uid or '(no UID)'}: {reason}")
        return status


def _raw_text(ds: Dataset, keyword: str) -> str:
    """An element's text as sent, without pydicom's validation (it warns of a bad UID, which
    we refuse anyway)."""
    element = ds.get_item(keyword)
    if element is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").rstrip("\0 ")
    return str(value or "")
