"""Where a workspace's database lives: SQLite in its folder (the default), or a PostgreSQL
server named by the folder's `workspace.json` or by a `postgresql://` URL given directly.

The workspace file never holds a password: libpq finds it (PGPASSWORD, ~/.pgpass, a service
file, a client certificate), so the file can sit in a shared folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from medviewer.atomic import atomic_write, atomic_write_json
from medviewer.workspace.errors import NotAWorkspace, WorkspaceError

WORKSPACE_FILE = "workspace.json"
URL_SCHEMES = ("postgresql://", "postgres://")
BLOB_MODES = ("database", "folder")


@dataclass(frozen=True)
class Location:
    """`root`: the local folder (models, jobs, caches); `database`: a PostgreSQL URL without
    password, or None for SQLite in `root`."""

    root: Path
    database: str | None = None


def is_database_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def without_password(url: str) -> str:
    """The URL with any password removed (user, host, port, database and options kept)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def server_folder(url: str) -> Path:
    """The local folder of a workspace opened by URL alone (models, jobs, caches): one per
    server and database, under the user's data folder."""
    from medviewer.config import default_workspace

    parts = urlsplit(without_password(url))
    key = hashlib.sha256(f"{parts.hostname}:{parts.port}{parts.path}".encode()).hexdigest()[:12]
    name = f"{parts.hostname or 'local'}-{parts.path.strip('/') or 'db'}-{key}"
    return default_workspace().parent / "servers" / name


def workspace_target(text: str) -> Path | str:
    """A `--workspace` argument: a postgresql:// URL as given, else a folder path (Path would
    fold the URL's `//`)."""
    return text if is_database_url(text) else Path(text)


def locate(target: Path | str) -> Location:
    """Where the workspace named by a folder or a URL keeps its database."""
    if is_database_url(target):
        folder = server_folder(str(target))
        if not (folder / WORKSPACE_FILE).is_file():  # so that jobs find it by folder too
            folder.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"database": without_password(str(target))})
            # Many clients may open the URL at once: each writes its own temp file.
            tmp = folder / f"{WORKSPACE_FILE}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"
            atomic_write(folder / WORKSPACE_FILE, lambda p: p.write_text(text), tmp=tmp)
        return Location(folder, str(target))
    root = Path(target).expanduser()
    file = root / WORKSPACE_FILE
    if not file.is_file():
        return Location(root)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        url = data["database"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise NotAWorkspace(f"{file}: not a readable workspace file ({e})") from e
    if not is_database_url(url):
        raise NotAWorkspace(f"{file}: 'database' must be a postgresql:// URL, not {url!r}")
    return Location(root, url)


def write_workspace_file(root: Path, url: str) -> Location:
    """Point the folder `root` at a PostgreSQL database (the URL stored without password)."""
    if not is_database_url(url):
        raise WorkspaceError(f"{url!r}: give a postgresql://USER@HOST[:PORT]/DATABASE URL")
    file = root / WORKSPACE_FILE
    if file.exists():
        raise WorkspaceError(f"{file}: already a workspace file; not replacing it")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(file, {"database": without_password(url)})
    return Location(root, without_password(url))
