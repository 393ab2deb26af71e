"""DICOMweb against one PACS node, through dicomweb-client: QIDO-RS search (studies, series),
WADO-RS retrieve instance by instance (so progress and cancel work between instances) and
STOW-RS store, one instance per request (per-file failures with the server's reason).

Every failure of the network or the server becomes one PacsError naming the node and why;
results are plain records, not DICOM JSON.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session, create_session_from_user_pass
from pydicom.dataset import Dataset

from medviewer.atomic import atomic_write
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import PacsNode
from medviewer.pacs.progress import Cancelled, Progress, Transfer
from medviewer.pacs.query import SeriesRecord, StudyQuery, StudyRecord

T = TypeVar("T")

# Asked for with includefield: not every server returns these by default.
_STUDY_FIELDS = (
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
_SERIES_FIELDS = (
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)
_UID = re.compile(r"(?=.{1,64}$)[0-9]+(\.[0-9]+)*")
# The instance as the node holds it (any transfer syntax): no transcoding, the pixels as stored.
_AS_STORED = (("application/dicom", "*"),)
# dicomweb-client percent-encodes query values; Orthanc's DICOMweb plugin (Debian's) does not
# decode them before matching, so PACS-%2A matched nothing. * and ? may stand in a URL's query
# as they are (RFC 3986). ^ may not (urllib3 encodes it again), so the ^ between a name's
# components goes as ?, the one-character wildcard, which matches it on every server.
_RAW = {"%2A": "*", "%3F": "?", "%5E": "?"}


def _send_matching_characters_raw(session: requests.Session) -> None:
    send = session.send

    def send_raw(request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        base, sep, query = (request.url or "").partition("?")
        for encoded, raw in _RAW.items():
            query = query.replace(encoded, raw)
        request.url = base + sep + query
        return send(request, **kwargs)

    session.send = send_raw  # type: ignore[method-assign]


class DicomWebNode:
    """A DICOMweb connection to one node: session, auth, TLS and timeout from the node."""

    def __init__(self, node: PacsNode) -> None:
        if not node.url:
            raise PacsError(f"PACS node {node.name}: no DICOMweb URL")
        self.node = node
        secret = node.secret()
        if node.auth == "basic":
            session = create_session_from_user_pass(node.user or "", secret or "")
        else:
            session = create_session()
            if node.auth == "bearer":
                session.headers["Authorization"] = f"Bearer {secret}"
        session.verify = node.verify_tls
        _send_matching_characters_raw(session)
        self._client = DICOMwebClient(node.url.rstrip("/"), session=session, timeout=node.timeout)
        # Retry only what a server says is passing (429, 503, ...), and not for long.
        self._client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=200)

    def echo(self) -> float:
        """Seconds a trivial QIDO query took; raises PacsError when the node does not answer."""
        started = time.monotonic()
        self._call(lambda: self._client.search_for_studies(limit=1))
        return time.monotonic() - started

    def find_studies(self, query: StudyQuery, limit: int | None = None) -> list[StudyRecord]:
        found = self._call(
            lambda: self._client.search_for_studies(
                search_filters=query.filters(),
                fields=list(_STUDY_FIELDS),
                # Not get_remaining: it pages by offset until an empty answer, and a server
                # that ignores offset (Orthanc's plugin does here) makes that loop forever.
                limit=limit,
            )
        )
        if not isinstance(found, list):
            raise self._error("answered something that is not a list of DICOM JSON studies")
        return [_study(d) for d in found]

    def find_series(self, study_uid: str) -> list[SeriesRecord]:
        """The series of one study (QIDO-RS), with their instance counts where the node says."""
        self._check_uid(study_uid, "Study Instance UID")
        found = self._call(
            lambda: self._client.search_for_series(
                study_instance_uid=study_uid, fields=list(_SERIES_FIELDS)
            )
        )
        if not isinstance(found, list):
            raise self._error("answered something that is not a list of DICOM JSON series")
        return [_series(study_uid, d) for d in found]

    def retrieve(
        self,
        folder: Path,
        study_uid: str,
        series_uid: str | None = None,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Transfer:
        """WADO-RS, one instance per request, into `folder/<series>/<instance>.dcm`.

        The instances are listed first (QIDO-RS), so the total is known before the first
        arrives. An instance the node no longer has or sends damaged is a line in `failed`;
        a node that stops answering is a PacsError (what arrived stays).
        """
        wanted = self._instances(study_uid, series_uid)
        transfer = Transfer()
        if progress:
            progress(0, len(wanted))
        for done, (series, sop) in enumerate(wanted):
            if cancel is not None and cancel.is_set():
                raise Cancelled(
                    f"PACS node {self.node.name}: retrieve cancelled; {len(transfer.files)} of "
                    f"{len(wanted)} instances had arrived and are kept"
                )
            try:
                transfer.files.append(self._fetch(Path(folder), study_uid, series, sop))
                transfer.sop_uids.append(sop)
            except _Failed as e:
                transfer.failed.append(str(e))
            if progress:
                progress(done + 1, len(wanted))
        return transfer

    def store(
        self,
        files: Sequence[Path],
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> Transfer:
        """STOW-RS, one file per request, so progress and cancel work between files. A file
        that is not DICOM, or that the node refuses (with its Failure Reason), is a line in
        `failed`; a node that cannot be reached or refuses us is a PacsError."""
        transfer = Transfer()
        if progress:
            progress(0, len(files))
        for done, path in enumerate(files):
            if cancel is not None and cancel.is_set():
                raise Cancelled(
                    f"PACS node {self.node.name}: send cancelled; {len(transfer.files)} of "
                    f"{len(files)} files had been stored"
                )
            try:
                sop, warning = self._send(Path(path))
                transfer.files.append(Path(path))
                transfer.sop_uids.append(sop)
                if warning:
                    transfer.notes.append(f"{path}: stored with a warning: {warning}")
            except _Failed as e:
                transfer.failed.append(f"{path}: {e}")
            if progress:
                progress(done + 1, len(files))
        return transfer

    def _instances(self, study_uid: str, series_uid: str | None) -> list[tuple[str, str]]:
        """(series, instance) UIDs to retrieve, from QIDO-RS."""
        self._check_uid(study_uid, "Study Instance UID")
        if series_uid is None:
            series_uids = [s.series_uid for s in self.find_series(study_uid)]
        else:
            self._check_uid(series_uid, "Series Instance UID")
            series_uids = [series_uid]
        wanted: list[tuple[str, str]] = []
        for series in series_uids:
            found = self._call(
                lambda series=series: self._client.search_for_instances(
                    study_instance_uid=study_uid, series_instance_uid=series
                )
            )
            if not isinstance(found, list):
                raise self._error("answered something that is not a list of DICOM JSON instances")
            wanted += [(series, _text(d, "00080018")) for d in found]
        if not wanted:
            what = f"series {series_uid} of study" if series_uid else "study"
            raise self._error(f"holds no instances of {what} {study_uid}")
        return wanted

    def _fetch(self, folder: Path, study_uid: str, series: str, sop: str) -> Path:
        for uid in (series, sop):
            if not _UID.fullmatch(uid):  # it becomes a file name
                raise _Failed(f"instance {sop!r} of series {series!r}: not a DICOM UID")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a server's odd values are not ours to fix
                ds = self._client.retrieve_instance(study_uid, series, sop, media_types=_AS_STORED)
        except requests.exceptions.HTTPError as e:
            if e.response is not None and e.response.status_code in (404, 410):
                raise _Failed(f"instance {sop}: the node no longer has it (HTTP 404)") from e
            raise self._failure(e) from e
        except requests.exceptions.RequestException as e:
            raise self._failure(e) from e
        except Exception as e:  # whatever pydicom makes of a damaged part
            raise _Failed(f"instance {sop}: the node sent something that is not DICOM ({e})") from e
        if ds.get("SOPInstanceUID") != sop or ds.get("SeriesInstanceUID") != series:
            raise _Failed(f"instance {sop}: the node sent instance {ds.get('SOPInstanceUID')}")
        path = folder / series / f"{sop}.dcm"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True))
        except OSError as e:
            raise PacsError(f"{path}: cannot write the retrieved instance: {e.strerror}") from e
        return path

    def _send(self, path: Path) -> tuple[str, str | None]:
        """Store one file; its SOP Instance UID and the node's warning, if any."""
        try:
            ds = pydicom.dcmread(path)
        except OSError as e:
            raise _Failed(f"cannot read: {e.strerror}") from e
        except Exception as e:  # pydicom's many ways of saying "not DICOM"
            raise _Failed(f"not a DICOM file ({e})") from e
        sop = str(ds.get("SOPInstanceUID", ""))
        if not sop or "SOPClassUID" not in ds:
            raise _Failed("not a DICOM file (no SOP Class or Instance UID)")
        try:
            answer = self._client.store_instances([ds])
        except requests.exceptions.HTTPError as e:
            # 400/409/415: the node read our request and refused this instance, saying why
            # in the body when it can; anything else (401, 404, 5xx) is the node's, not the file's.
            if e.response is not None and e.response.status_code in (400, 409, 415):
                raise _Failed(_stow_refusal(e.response, sop)) from e
            raise self._failure(e) from e
        except (requests.exceptions.RequestException, ValueError) as e:
            raise self._failure(e) from e
        failure, warning = stow_outcome(answer, sop)
        if failure:
            raise _Failed(failure)
        return sop, warning

    def _check_uid(self, uid: str, what: str) -> None:
        if not _UID.fullmatch(uid or ""):
            raise self._error(f"{what} {uid!r} is not a DICOM UID (digits and dots, 64 at most)")

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except (requests.exceptions.RequestException, ValueError) as e:
            raise self._failure(e) from e

    def _failure(self, e: Exception) -> PacsError:
        """The one PacsError for a failed request: what the user reads, naming the node."""
        if isinstance(e, requests.exceptions.SSLError):
            return self._error(f"TLS failed ({_root(e)})")
        # ConnectTimeout is also a ConnectionError: timeouts first.
        if isinstance(e, requests.exceptions.Timeout):
            return self._error(f"no answer within {self.node.timeout:g} s (timeout)")
        if isinstance(e, requests.exceptions.ConnectionError):
            if "refused" in str(e).lower():
                return self._error("connection refused (is the server running on that port?)")
            return self._error(f"cannot connect ({_root(e)})")
        if isinstance(e, requests.exceptions.HTTPError):
            return self._error(_http_reason(e.response))
        if isinstance(e, requests.exceptions.RequestException):
            return self._error(str(e))
        # a body that is not DICOM JSON
        return self._error(f"answered something that is not DICOM JSON ({e})")

    def _error(self, reason: str) -> PacsError:
        return PacsError(f"PACS node {self.node.name} ({self.node.url}): {reason}")


class _Failed(Exception):
    """One instance could not be retrieved or stored; the transfer goes on."""


# STOW-RS Failure and Warning Reasons (PS3.18 Table 10.5.3-1, PS3.4 Annex B.2.3).
_FAILURES = {
    0x0110: "processing failure",
    0x0111: "duplicate SOP instance",
    0x0122: "SOP class not supported",
    0x0124: "not authorised",
    0xC122: "transfer syntax not supported",
}
_FAILURE_GROUPS = {  # by the code's high byte; Cxxx by its high nibble
    0xA7: "out of resources",
    0xA9: "data set does not match SOP class",
    **{0xC0 + n: "cannot understand" for n in range(16)},
}
_WARNINGS = {
    0xB000: "coercion of data elements",
    0xB006: "elements discarded",
    0xB007: "data set does not match SOP class",
}


def _reason(code: object, known: dict[int, str], groups: dict[int, str] | None = None) -> str:
    try:
        value = int(code)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "no reason given"
    text = known.get(value) or (groups or {}).get(value >> 8) or "unknown reason"
    return f"{text} (0x{value:04X})"


def stow_outcome(answer: Dataset, sop: str) -> tuple[str | None, str | None]:
    """(failure, warning) for one instance from a STOW-RS response: the Failed SOP Sequence
    names a refused instance with its Failure Reason; a stored one may carry a Warning
    Reason. An empty answer (some servers send none on success) is success."""
    for item in answer.get("FailedSOPSequence", []):
        if item.get("ReferencedSOPInstanceUID", sop) == sop:
            reason = _reason(item.get("FailureReason"), _FAILURES, _FAILURE_GROUPS)
            return f"the node refused it: {reason}", None
    for item in answer.get("ReferencedSOPSequence", []):
        if item.get("ReferencedSOPInstanceUID") == sop and "WarningReason" in item:
            return None, _reason(item.WarningReason, _WARNINGS)
    return None, None


def _stow_refusal(response: requests.Response, sop: str) -> str:
    what = f"the node refused it: HTTP {response.status_code} {response.reason or ''}".rstrip()
    try:
        failure, _ = stow_outcome(Dataset.from_json(response.json()), sop)
    except Exception:  # noqa: BLE001 - a body without the details: the status must do
        return what
    return failure.replace("the node refused it", what) if failure else what


def _http_reason(response: requests.Response | None) -> str:
    if response is None:
        return "HTTP error without a response"
    code = response.status_code
    what = f"HTTP {code} {response.reason or ''}".rstrip()
    if code == 401:
        return f"{what}: the server wants (other) credentials"
    if code == 403:
        return f"{what}: these credentials may not do this"
    if code == 404:
        return f"{what}: no DICOMweb service at {response.url} (check the URL's path)"
    return what


def _root(e: BaseException) -> str:
    """The innermost cause's message: urllib3 wraps the socket error several times."""
    while e.__context__ is not None and e.__context__ is not e:
        e = e.__context__
    return str(e) or type(e).__name__


def _value(study: dict[str, Any], tag: str) -> list[Any]:
    return list(study.get(tag, {}).get("Value", []))


def _text(study: dict[str, Any], tag: str) -> str:
    values = _value(study, tag)
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # a person name: {"Alphabetic": "..."}
        return str(first.get("Alphabetic", ""))
    return str(first)


def _count(study: dict[str, Any], tag: str) -> int | None:
    values = _value(study, tag)
    try:
        return int(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _series(study_uid: str, series: dict[str, Any]) -> SeriesRecord:
    return SeriesRecord(
        study_uid=study_uid,
        series_uid=_text(series, "0020000E"),
        modality=_text(series, "00080060"),
        number=_text(series, "00200011"),
        description=_text(series, "0008103E"),
        instances=_count(series, "00201209"),
    )


def _study(study: dict[str, Any]) -> StudyRecord:
    return StudyRecord(
        study_uid=_text(study, "0020000D"),
        patient_id=_text(study, "00100020"),
        patient_name=_text(study, "00100010"),
        study_date=_text(study, "00080020"),
        accession=_text(study, "00080050"),
        description=_text(study, "00081030"),
        modalities=tuple(str(m) for m in _value(study, "00080061")),
        series=_count(study, "00201206"),
        instances=_count(study, "00201208"),
    )
