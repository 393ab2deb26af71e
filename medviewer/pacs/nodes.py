"""PACS nodes kept in the user's settings: one JSON file, written by `medviewer.atomic`.

Secrets are never stored: a node names the environment variable that holds its password or
token, read only when connecting.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from medviewer.atomic import atomic_write_json
from medviewer.config import pacs_nodes_file
from medviewer.pacs.errors import PacsError

AUTH_KINDS = ("none", "basic", "bearer")
DEFAULT_TIMEOUT_S = 20.0
DEFAULT_CALLING_AE = "MEDVIEWER"
RETRIEVE_WITH = ("get", "move")
_AE = re.compile(r"[ -\[\]-~]{1,16}")  # 16 printable ASCII characters, no backslash
_FORMAT = 1


@dataclass(frozen=True)
class PacsNode:
    name: str
    url: str | None = None  # DICOMweb root, e.g. http://host:8042/dicom-web
    dimse: str | None = None  # the node's AE title@host:port (DIMSE)
    auth: str = "none"  # none | basic | bearer
    user: str | None = None  # basic auth
    secret_env: str | None = None  # the variable holding the password or bearer token
    verify_tls: bool = True
    timeout: float = DEFAULT_TIMEOUT_S
    calling_ae: str = DEFAULT_CALLING_AE  # our AE title towards a DIMSE node
    retrieve_with: str = "get"  # DIMSE retrieve: C-GET, or C-MOVE to our own Storage SCP
    move_port: int | None = None  # where our Storage SCP listens for a C-MOVE (the PACS
    # must know calling_ae at this host and port)

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise PacsError(f"PACS node {self.name or '(no name)'}: {problem}")

    def _problem(self) -> str | None:
        if not self.name or not self.name.strip():
            return "a node needs a name"
        if not self.url and not self.dimse:
            return "a node needs a DICOMweb URL or a DIMSE AE title@host:port"
        if self.url and self.dimse:
            return "give a DICOMweb URL or a DIMSE address, not both"
        if self.dimse:
            try:
                self.dimse_address()
            except PacsError as e:
                return str(e)
        if not _AE.fullmatch(self.calling_ae) or not self.calling_ae.strip():
            return f"AE title {self.calling_ae!r} must be 1-16 printable ASCII characters"
        if self.retrieve_with not in RETRIEVE_WITH:
            return f"retrieve {self.retrieve_with!r} is not one of {', '.join(RETRIEVE_WITH)}"
        if self.retrieve_with == "move" and not self.move_port:
            return "C-MOVE needs the port our Storage SCP listens on (--move-port)"
        if self.move_port is not None and not 0 < self.move_port < 65536:
            return f"port {self.move_port} is not between 1 and 65535"
        if self.url and not self.url.startswith(("http://", "https://")):
            return f"URL {self.url!r} must start with http:// or https://"
        if self.auth not in AUTH_KINDS:
            return f"auth {self.auth!r} is not one of {', '.join(AUTH_KINDS)}"
        if self.auth == "basic" and not self.user:
            return "basic auth needs a user"
        if self.auth != "none" and not self.secret_env:
            return f"{self.auth} auth needs the environment variable holding the secret"
        if not self.timeout > 0:
            return f"timeout must be more than 0 s, not {self.timeout}"
        return None

    def dimse_address(self) -> tuple[str, str, int]:
        """(AE title, host, port) from `AE@host:port`."""
        ae, at, rest = (self.dimse or "").rpartition("@")
        host, colon, port = rest.rpartition(":")
        if not (at and colon and port.isdigit() and host and _AE.fullmatch(ae) and ae.strip()):
            raise PacsError(
                f"DIMSE address {self.dimse!r} must read AE_TITLE@host:port "
                "(AE title 1-16 printable ASCII characters)"
            )
        if not 0 < int(port) < 65536:
            raise PacsError(f"DIMSE address {self.dimse!r}: port {port} is not 1-65535")
        return ae, host, int(port)

    def secret(self) -> str | None:
        """The password or token, from the environment; None without auth."""
        if self.auth == "none" or not self.secret_env:
            return None
        value = os.environ.get(self.secret_env)
        if not value:
            raise PacsError(
                f"PACS node {self.name}: environment variable {self.secret_env} "
                f"(its {self.auth} auth secret) is not set"
            )
        return value

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PacsNode:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})  # type: ignore[arg-type]


class NodeBook:
    """The saved nodes, by name. Every change is written to disk at once."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or pacs_nodes_file()

    def nodes(self) -> list[PacsNode]:
        if not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [PacsNode.from_json(n) for n in data["nodes"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise PacsError(f"PACS node settings {self.path} cannot be read: {e}") from e

    def get(self, name: str) -> PacsNode:
        for node in self.nodes():
            if node.name == name:
                return node
        raise PacsError(f"no PACS node named {name!r} (see `medviewer pacs nodes`)")

    def add(self, node: PacsNode, *, replace: bool = False) -> None:
        nodes = self.nodes()
        if not replace and any(n.name == node.name for n in nodes):
            raise PacsError(f"a PACS node named {node.name!r} exists (remove it first)")
        self._write([n for n in nodes if n.name != node.name] + [node])

    def remove(self, name: str) -> None:
        nodes = self.nodes()
        if not any(n.name == name for n in nodes):
            raise PacsError(f"no PACS node named {name!r} (see `medviewer pacs nodes`)")
        self._write([n for n in nodes if n.name != name])

    def _write(self, nodes: list[PacsNode]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, {"format": _FORMAT, "nodes": [n.to_json() for n in nodes]})
