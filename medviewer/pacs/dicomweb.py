"""DICOMweb (QIDO-RS) against one PACS node, through dicomweb-client.

Every failure of the network or the server becomes one PacsError naming the node and why;
results are plain records, not DICOM JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session, create_session_from_user_pass

from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import PacsNode
from medviewer.pacs.query import StudyQuery, StudyRecord

T = TypeVar("T")

# Asked for with includefield: not every server returns these by default.
_STUDY_FIELDS = (
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
# dicomweb-client percent-encodes query values; Orthanc's DICOMweb plugin (Debian's) does not
# decode them before matching, so PACS-%2A matched nothing. * and ? may stand in a URL's query
# as they are (RFC 3986). ^ may not (urllib3 encodes it again): a name with ^ (Family^Given)
# still finds nothing on such a server; Family* does.
_RAW = {"%2A": "*", "%3F": "?"}


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

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except requests.exceptions.SSLError as e:
            raise self._error(f"TLS failed ({_root(e)})") from e
        # ConnectTimeout is also a ConnectionError: timeouts first.
        except requests.exceptions.Timeout as e:
            raise self._error(f"no answer within {self.node.timeout:g} s (timeout)") from e
        except requests.exceptions.ConnectionError as e:
            if "refused" in str(e).lower():
                raise self._error("connection refused (is the server running on that port?)") from e
            raise self._error(f"cannot connect ({_root(e)})") from e
        except requests.exceptions.HTTPError as e:
            raise self._error(_http_reason(e.response)) from e
        except requests.exceptions.RequestException as e:
            raise self._error(str(e)) from e
        except ValueError as e:  # a body that is not DICOM JSON
            raise self._error(f"answered something that is not DICOM JSON ({e})") from e

    def _error(self, reason: str) -> PacsError:
        return PacsError(f"PACS node {self.node.name} ({self.node.url}): {reason}")


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
