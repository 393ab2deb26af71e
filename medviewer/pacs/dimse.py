"""DIMSE (DICOM networking) against one PACS node, through pynetdicom.

C-ECHO; C-FIND at study and series level (Study Root); retrieve by C-GET, or by C-MOVE to our
own Storage SCP started for the transfer; C-STORE. Every failure (refused, rejected, aborted, no
answer within the node's timeout, a failure status) becomes one PacsError naming the node and
why (`pacs.association`); results are the same records as DICOMweb's (`pacs.dimse_records`).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.status import (
    GENERAL_STATUS,
    QR_FIND_SERVICE_CLASS_STATUS,
    QR_GET_SERVICE_CLASS_STATUS,
    QR_MOVE_SERVICE_CLASS_STATUS,
    STORAGE_SERVICE_CLASS_STATUS,
    code_to_category,
)

from medviewer.config import debug
from medviewer.pacs.association import Peer, Watch
from medviewer.pacs.dimse_records import (
    SERIES_KEYS,
    STUDY_KEYS,
    multi_values,
    query_identifier,
    series_record,
    study_record,
)
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import PacsNode
from medviewer.pacs.progress import Cancelled, Progress, Transfer
from medviewer.pacs.query import SeriesRecord, StudyQuery, StudyRecord
from medviewer.pacs.receiver import Receiver

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# What we accept on retrieve: what pydicom and our pylibjpeg / pyjpegls plugins decode, so
# the node sends its files as they are rather than transcoding them (or failing to).
_ACCEPTED_SYNTAXES = [
    *_UNCOMPRESSED,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]
_STORAGE_CLASSES = [cx.abstract_syntax for cx in StoragePresentationContexts]
_MAX_CONTEXTS = 128  # an association proposes at most 128 presentation contexts
_PENDING = (0xFF00, 0xFF01)


class DimseNode:
    """A DIMSE connection to one node: its AE title@host:port, our calling AE, its timeout."""

    def __init__(self, node: PacsNode) -> None:
        self.node = node
        self._peer = Peer(node)
        # pynetdicom logs every PDU at INFO; our errors already say what went wrong.
        logging.getLogger("pynetdicom").setLevel(logging.DEBUG if debug() else logging.WARNING)

    def echo(self) -> float:
        """Seconds an association with one C-ECHO took; PacsError when the node does not answer."""
        started = time.monotonic()
        with self._peer.association([build_context(Verification)]) as (assoc, watch):
            self._peer.check(assoc, watch, assoc.send_c_echo(), "C-ECHO", GENERAL_STATUS)
        return time.monotonic() - started

    def find_studies(self, query: StudyQuery, limit: int | None = None) -> list[StudyRecord]:
        identifier = query_identifier("STUDY", {**dict.fromkeys(STUDY_KEYS, ""), **query.filters()})
        return [study_record(d) for d in self._find(identifier, limit)]

    def find_series(self, study_uid: str) -> list[SeriesRecord]:
        keys = {**dict.fromkeys(SERIES_KEYS, ""), "StudyInstanceUID": study_uid}
        found = self._find(query_identifier("SERIES", keys), None)
        return [series_record(d, study_uid) for d in found]

    def retrieve(
        self,
        folder: Path,
        study_uid: str,
        series_uid: str | None = None,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Transfer:
        """C-GET (or C-MOVE to our Storage SCP) the study or one series into `folder`."""
        keys = {"StudyInstanceUID": study_uid}
        if series_uid:
            keys["SeriesInstanceUID"] = series_uid
        identifier = query_identifier("SERIES" if series_uid else "STUDY", keys)
        receiver = Receiver(folder, progress, cancel)
        if receiver.cancelled:
            raise Cancelled(self._peer.reason("retrieve cancelled before it started"))
        if self.node.retrieve_with == "move":
            self._move(identifier, receiver)
        else:
            self._get(identifier, receiver)
        if receiver.cancelled:
            kept = len(receiver.transfer.files)
            kept_in = f"{kept} instance(s) kept in {folder}"
            raise Cancelled(self._peer.reason(f"retrieve cancelled; {kept_in}"))
        return receiver.transfer

    def store(
        self,
        files: Sequence[Path],
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Transfer:
        """C-STORE each file; a file that is unreadable or refused is its own failure."""
        transfer = Transfer()
        readable: list[tuple[Path, str, UID, UID]] = []  # path, SOP instance, class, syntax
        for path in map(Path, files):
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True)
                sop = (str(header.SOPInstanceUID), UID(header.SOPClassUID))
                readable.append((path, *sop, UID(header.file_meta.TransferSyntaxUID)))
            except Exception as e:  # noqa: BLE001 - any unreadable file fails alone
                transfer.failed.append(f"{path}: not a DICOM instance that can be sent ({e})")
        done = len(transfer.failed)
        if progress is not None and done:
            progress(done, len(files))
        if not readable:
            return transfer
        with self._peer.association(_store_contexts(readable, self._peer.reason)) as (assoc, watch):
            for msg_id, (path, sop_uid, _, _) in enumerate(readable, 1):
                if cancel is not None and cancel.is_set():
                    sent = len(transfer.files)
                    raise Cancelled(self._peer.reason(f"send cancelled after {sent} file(s)"))
                try:
                    status = assoc.send_c_store(path, msg_id=msg_id % 65536 or 1)
                except (ValueError, AttributeError, OSError, EOFError) as e:
                    transfer.failed.append(f"{path}: {e}")
                else:
                    what = f"C-STORE of {path}"
                    failure = self._peer.check(
                        assoc, watch, status, what, STORAGE_SERVICE_CLASS_STATUS, raise_=False
                    )
                    if failure:
                        transfer.failed.append(f"{path}: refused by the node, {failure}")
                    else:
                        transfer.files.append(path)
                        transfer.sop_uids.append(sop_uid)
                        if code_to_category(int(status.Status)) == "Warning":
                            warning = self._peer.describe(status, STORAGE_SERVICE_CLASS_STATUS)
                            transfer.notes.append(f"{path}: stored with a warning: {warning}")
                done += 1
                if progress is not None:
                    progress(done, len(files))
        return transfer

    # --- exchanges --------------------------------------------------------------------

    def _find(self, identifier: Dataset, limit: int | None) -> list[Dataset]:
        model = StudyRootQueryRetrieveInformationModelFind
        found: list[Dataset] = []
        with self._peer.association([build_context(model)]) as (assoc, watch):
            cancelled = False
            for status, answer in assoc.send_c_find(identifier, model):
                self._peer.check(assoc, watch, status, "C-FIND", QR_FIND_SERVICE_CLASS_STATUS)
                if status.Status not in _PENDING or answer is None:
                    continue
                if limit is None or len(found) < limit:
                    found.append(answer)
                elif not cancelled:  # enough: ask the node to stop, read its last answer
                    assoc.send_c_cancel(1, query_model=model)
                    cancelled = True
        return found

    def _get(self, identifier: Dataset, receiver: Receiver) -> None:
        model = StudyRootQueryRetrieveInformationModelGet
        # C-GET's instances come back on this association: we propose to be their Storage SCP.
        contexts = [build_context(model)]
        contexts += [build_context(c, _ACCEPTED_SYNTAXES) for c in _STORAGE_CLASSES]
        roles = [build_role(c, scp_role=True) for c in _STORAGE_CLASSES]
        handlers = [(evt.EVT_C_STORE, receiver.handle_store)]
        with self._peer.association(contexts, roles=roles, handlers=handlers) as (assoc, watch):
            receiver.on_cancel = lambda: assoc.send_c_cancel(1, query_model=model)
            responses = assoc.send_c_get(identifier, model)
            self._sub_operations(assoc, watch, responses, receiver, "C-GET")

    def _move(self, identifier: Dataset, receiver: Receiver) -> None:
        model = StudyRootQueryRetrieveInformationModelMove
        port = self.node.move_port or 0  # PacsNode requires it for "move"
        scp = self._peer.ae(self.node.calling_ae)
        for sop_class in _STORAGE_CLASSES:
            scp.add_supported_context(sop_class, _ACCEPTED_SYNTAXES)
        # Loopback only when the node is on this computer; else it must reach us from outside.
        bind = "127.0.0.1" if _is_loopback(self._peer.host) else ""
        try:
            server = scp.start_server(
                (bind, port), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver.handle_store)]
            )
        except OSError as e:
            raise self._peer.error(
                f"our Storage SCP ({self.node.calling_ae}) cannot listen on port {port} "
                f"for the C-MOVE ({e.strerror or e})"
            ) from e
        try:
            with self._peer.association([build_context(model)]) as (assoc, watch):
                receiver.on_cancel = lambda: assoc.send_c_cancel(1, query_model=model)
                responses = assoc.send_c_move(identifier, self.node.calling_ae, model)
                self._sub_operations(assoc, watch, responses, receiver, "C-MOVE")
        finally:
            server.shutdown()

    def _sub_operations(
        self,
        assoc: Association,
        watch: Watch,
        responses: Iterator[tuple[Dataset, Dataset | None]],
        receiver: Receiver,
        what: str,
    ) -> None:
        """Follow a C-GET/C-MOVE to its final response; the node's failures go to `failed`."""
        table = QR_GET_SERVICE_CLASS_STATUS if what == "C-GET" else QR_MOVE_SERVICE_CLASS_STATUS
        for status, identifier in responses:
            # After a cancel, a failure status (the rest refused) is what we asked for.
            failure = self._peer.check(assoc, watch, status, what, table, raise_=False)
            if status.Status in _PENDING:
                receiver.pending(status)
                receiver.check_cancel()
                continue
            if failure and not receiver.cancelled:
                local = f"; first on our side: {receiver.transfer.failed[0]}"
                raise self._peer.error(
                    f"{what} failed, {failure}" + (local if receiver.transfer.failed else "")
                )
            failed = int(status.get("NumberOfFailedSuboperations") or 0)
            listed = identifier.get("FailedSOPInstanceUIDList", []) if identifier else []
            theirs = [u for u in multi_values(listed) if u not in receiver.failed_uids]
            receiver.transfer.failed += [f"instance {u}: not sent by the node" for u in theirs]
            unnamed = failed - len(receiver.failed_uids) - len(theirs)
            if unnamed > 0 and not receiver.cancelled:
                receiver.transfer.failed.append(f"{unnamed} instance(s) not sent by the node")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store_contexts(
    readable: Sequence[tuple[Path, str, UID, UID]], reason: Callable[[str], str]
) -> list[PresentationContext]:
    """One context per SOP class and transfer syntax; uncompressed may also go as the others."""
    wanted: dict[tuple[UID, UID], list[UID]] = {}
    for _, _, sop_class, syntax in readable:
        extra = _UNCOMPRESSED if syntax in _UNCOMPRESSED else ()
        wanted[(sop_class, syntax)] = list(dict.fromkeys((syntax, *extra)))
    if len(wanted) > _MAX_CONTEXTS:
        raise PacsError(
            reason(
                f"{len(wanted)} kinds of instance (SOP class and transfer syntax) in one send; "
                f"an association carries at most {_MAX_CONTEXTS}: send them in parts"
            )
        )
    return [build_context(c, syntaxes) for (c, _), syntaxes in wanted.items()]
