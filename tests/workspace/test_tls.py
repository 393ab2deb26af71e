"""A PostgreSQL workspace over TLS (issue 16), against a real server with ssl=on and a
self-signed certificate: `sslmode=require` encrypts the workspace's connections, `verify-full`
with the server's certificate as root works, and with another root it fails in one line naming
the server, not a traceback."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from medviewer.cli import main
from medviewer.workspace import Workspace
from medviewer.workspace.location import write_workspace_file
from tests.workspace.pg_server import PostgresServer, find_binaries, make_certificate


@pytest.fixture(scope="module")
def tls_server() -> Iterator[PostgresServer]:
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl): `make debian-tools` as root")
    server = PostgresServer(binaries, ssl=True)
    try:
        server.start()
    except (subprocess.SubprocessError, OSError, RuntimeError) as e:
        server.stop()
        pytest.skip(f"could not start PostgreSQL with TLS from {binaries}: {e}")
    yield server
    server.stop()


def _encrypted(ws: Workspace) -> bool:
    return ws.db.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def test_sslmode_require_and_verify_full_reach_the_workspace(
    tmp_path: Path, tls_server: PostgresServer
) -> None:
    url = tls_server.database()
    with Workspace.create(tmp_path / "team", database=f"{url}?sslmode=require") as ws:
        assert _encrypted(ws)
    with Workspace.open(tmp_path / "team") as ws:  # workspace.json keeps the sslmode
        assert _encrypted(ws) and ws.where.endswith("?sslmode=require")
    verified = f"{url}?sslmode=verify-full&sslrootcert={tls_server.cert}"
    write_workspace_file(tmp_path / "verified", verified)
    with Workspace.open(tmp_path / "verified") as ws:
        assert _encrypted(ws)


def test_verify_full_with_a_wrong_root_fails_in_one_line_naming_the_server(
    tmp_path: Path, tls_server: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = tls_server.database()
    Workspace.create(tmp_path / "team", database=url).close()
    wrong = tmp_path / "wrong.crt"
    make_certificate(wrong, tmp_path / "wrong.key")  # another self-signed root
    write_workspace_file(tmp_path / "mine", f"{url}?sslmode=verify-full&sslrootcert={wrong}")
    assert main(["status", "--workspace", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {url}?sslmode=verify-full") and "127.0.0.1" in err, err
    assert "certificate verify failed" in err, err


def test_a_refused_connection_reads_in_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nothing listens on: libpq adds a second line of advice
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_workspace_file(tmp_path / "mine", f"postgresql://ann@127.0.0.1:{port}/team")
    assert main(["status", "--workspace", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Connection refused" in err and f"{port}" in err, err
