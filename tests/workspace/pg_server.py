"""A real PostgreSQL server for the tests: Debian's `initdb` + `pg_ctl` in a temp folder, on a
free 127.0.0.1 port, its unix socket in that folder; removed afterwards. Run as a system user
(`postgres`, else `nobody`) when the tests run as root, since initdb refuses root."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SUPERUSER = "postgres"
BACKENDS = ("sqlite", "postgresql")  # the stores a workspace test runs on


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl: PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin; None where PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name.split(".")[0] or 0),
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> str | None:
    """The user to run the server as: None for the current one, unless that is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither user postgres nor nobody exists for initdb")


def make_certificate(cert: Path, key: Path, name: str = "127.0.0.1") -> None:
    """A self-signed certificate for the IP address `name` (its own root), key readable by
    its owner only (PostgreSQL refuses any other)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=IP:{name}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    key.chmod(0o600)


class PostgresServer:
    """One throw-away cluster; `database()` makes a fresh database per test."""

    def __init__(self, binaries: Path, *, durable: bool = False, ssl: bool = False) -> None:
        """`durable`: the server's default fsync and commit settings (benchmarks); the tests
        turn them off, as nothing need survive a crash there. `ssl`: TLS on, with a self-signed
        certificate for 127.0.0.1 (`cert`, its own root) made by openssl in the folder."""
        self.binaries = binaries
        self.durable = durable
        self.ssl = ssl
        self.folder = Path(tempfile.mkdtemp(prefix="medviewer-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user = _run_as()
        self._names = itertools.count()
        self.cert = self.folder / "server.crt"

    def _cmd(self, *args: str) -> list[str]:
        if self.user is None:
            return list(args)
        return ["runuser", "-u", self.user, "--", *args]

    def start(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._cmd(
                str(self.binaries / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder}"
        options += " -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        if self.ssl:
            key = self.folder / "server.key"
            make_certificate(self.cert, key)
            if self.user is not None:
                entry = pwd.getpwnam(self.user)
                os.chown(key, entry.pw_uid, entry.pw_gid)
            options += f" -c ssl=on -c ssl_cert_file={self.cert} -c ssl_key_file={key}"
        subprocess.run(
            self._cmd(
                str(self.binaries / "pg_ctl"), "-D", str(self.data), "-o", options,
                "-l", str(self.folder / "server.log"), "-w", "-t", "60", "start",
            ),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._cmd(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop"),
                capture_output=True, timeout=60,
            )  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        """Run statements as the superuser on the maintenance database."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)

    def database(self) -> str:
        """A new empty database's URL."""
        name = f"t{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session; the test skips, saying why, where none is installed."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl): `make debian-tools` as root")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    server = PostgresServer(binaries)
    try:
        server.start()
    except (subprocess.SubprocessError, OSError, RuntimeError) as e:
        server.stop()
        detail = getattr(e, "stderr", b"") or b""
        pytest.skip(f"could not start PostgreSQL from {binaries}: {e} {detail.decode()[-300:]}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's server."""
    return postgres_server.database()


def stored_blobs(ws: object) -> int:
    """How many mask blobs the workspace keeps, in its folder or in its database."""
    from medviewer.workspace.blobs import BlobStore

    blobs = ws.blobs  # type: ignore[attr-defined]
    if isinstance(blobs, BlobStore):
        return len(list(blobs.root.glob("??/*.png")))
    return ws.db.execute("SELECT count(*) FROM blob_data").fetchone()[0]  # type: ignore[attr-defined]


def new_workspace_on(backend: str, folder: Path, request: pytest.FixtureRequest) -> Any:
    """A new workspace in `folder` on "sqlite" or "postgresql" (a fresh database of the
    session's server; the test skips where there is none)."""
    from medviewer.workspace import Workspace

    if backend == "sqlite":
        return Workspace.open(folder)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return Workspace.create(folder, database=server.database())
