"""One DIMSE association with a PACS node, and how each way it fails reads.

Refused, unreachable, rejected (with the node's reason), accepted without any service asked
for, aborted, no answer within the node's timeout, a failure status: each one PacsError
naming the node (name and AE@host:port) and the reason. The exchanges are in `pacs.dimse`.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import code_to_category

from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import PacsNode

_HINTS = {
    0xA801: "the node does not know our AE title {ae} as a C-MOVE destination "
    "(register {ae} there with this computer's address and port {port})",
}


class Watch:
    """What happened on one association, for the error message a failure gets."""

    def __init__(self) -> None:
        self.connected = False
        self.peer_aborted = False

    def handlers(self) -> list[tuple[Any, Callable[[Any], None]]]:
        return [(evt.EVT_CONN_OPEN, self._opened), (evt.EVT_PDU_RECV, self._received)]

    def _opened(self, event: Any) -> None:
        self.connected = True

    def _received(self, event: Any) -> None:
        if isinstance(event.pdu, A_ABORT_RQ):
            self.peer_aborted = True


class Peer:
    """A node as DIMSE reaches it: its AE title@host:port, our calling AE, its timeout."""

    def __init__(self, node: PacsNode) -> None:
        if not node.dimse:
            raise PacsError(f"PACS node {node.name}: no DIMSE address (AE_TITLE@host:port)")
        self.node = node
        self.called, self.host, self.port = node.dimse_address()

    def ae(self, title: str) -> AE:
        ae = AE(ae_title=title)
        t = self.node.timeout
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = t
        return ae

    @contextmanager
    def association(
        self,
        contexts: Sequence[PresentationContext],
        *,
        roles: Sequence[Any] = (),
        handlers: Sequence[tuple[Any, Callable[[Any], Any]]] = (),
    ) -> Iterator[tuple[Association, Watch]]:
        ae = self.ae(self.node.calling_ae)
        for cx in contexts:
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
        watch = Watch()
        assoc = ae.associate(
            self.host,
            self.port,
            ae_title=self.called,
            ext_neg=list(roles) or None,
            evt_handlers=[*watch.handlers(), *handlers],
        )
        if not assoc.is_established:
            raise self.error(self._not_established(assoc, watch, contexts))
        try:
            yield assoc, watch
        finally:
            if assoc.is_established:
                assoc.release()

    def _not_established(
        self, assoc: Association, watch: Watch, contexts: Sequence[PresentationContext]
    ) -> str:
        answer = assoc.acceptor.primitive
        if assoc.is_rejected and answer is not None:
            reason = answer.reason_str
            return (
                f"association rejected: {reason[:1].lower()}{reason[1:]} (we called "
                f"{self.called} as {self.node.calling_ae}; {answer.result_str.lower()})"
            )
        if answer is not None and answer.result == 0:
            asked = ", ".join(sorted({cx.abstract_syntax.name for cx in contexts})[:3])
            return f"association accepted, but none of the services asked for ({asked})"
        if not watch.connected:
            return self._unreachable()
        if watch.peer_aborted:
            return "the node aborted the association request"
        return f"no answer to the association request within {self.node.timeout:g} s (timeout)"

    def _unreachable(self) -> str:
        """Why the TCP connection failed: pynetdicom only logs it, so ask the socket again."""
        try:
            socket.create_connection((self.host, self.port), timeout=self.node.timeout).close()
        except ConnectionRefusedError:
            return "connection refused (is a DICOM server listening on that port?)"
        except TimeoutError:
            return f"no connection within {self.node.timeout:g} s (timeout)"
        except socket.gaierror as e:
            return f"unknown host {self.host} ({e.strerror})"
        except OSError as e:
            return f"cannot connect ({e.strerror or e})"
        return "cannot connect (the connection failed, then worked when tried again)"

    def check(
        self,
        assoc: Association,
        watch: Watch,
        status: Dataset,
        what: str,
        table: dict[int, tuple[str, str]],
        *,
        raise_: bool = True,
    ) -> str | None:
        """The failure a response's status says (raised unless raise_ is False), else None.

        No status at all means the association was lost: always raised.
        """
        if "Status" not in status:
            if watch.peer_aborted:
                raise self.error(f"the node aborted the association during {what}")
            raise self.error(
                f"no answer within {self.node.timeout:g} s during {what} (timeout; "
                "association aborted)"
            )
        if code_to_category(int(status.Status)) != "Failure":
            return None
        text = self.describe(status, table)
        if raise_:
            raise self.error(f"{what} failed, {text}")
        return text

    def describe(self, status: Dataset, table: dict[int, tuple[str, str]]) -> str:
        """`status 0xA700 (Refused: Out of Resources)`, with a hint and the node's comment."""
        code = int(status.Status)
        meaning = table.get(code, ("", ""))[1] or code_to_category(code).lower()
        hint = _HINTS.get(code, "").format(ae=self.node.calling_ae, port=self.node.move_port)
        text = f"status 0x{code:04X} ({meaning})" + (f": {hint}" if hint else "")
        if status.get("ErrorComment"):
            text += f": {status.ErrorComment}"
        return text

    def reason(self, reason: str) -> str:
        return f"PACS node {self.node.name} ({self.node.dimse}): {reason}"

    def error(self, reason: str) -> PacsError:
        return PacsError(self.reason(reason))
