"""The PostgreSQL store: the SQL adapter, the workspace file, the schema in its own table, the
mask blobs in the database or a folder; on a real server (tests/workspace/pg_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psycopg
import pytest

from medviewer.workspace import (
    CorruptBlob,
    NotAWorkspace,
    SaveError,
    SchemaTooNew,
    Workspace,
    WorkspaceError,
)
from medviewer.workspace.blobs import BlobStore, DatabaseBlobStore
from medviewer.workspace.location import WORKSPACE_FILE, locate, without_password
from medviewer.workspace.postgres import translate
from medviewer.workspace.schema import SCHEMA_VERSION
from tests.workspace import pg_server


def test_translate_placeholders_like_and_returning() -> None:
    sql, returns = translate("SELECT id FROM images WHERE path LIKE ? AND x = '5%'")
    assert sql == "SELECT id FROM images WHERE path ILIKE %s AND x = '5%%'" and not returns
    sql, returns = translate("INSERT INTO jobs (kind) VALUES (?)")
    assert sql.endswith("RETURNING id") and returns
    sql, returns = translate("INSERT INTO blob_data (digest) VALUES (?) ON CONFLICT DO NOTHING")
    assert not returns and "RETURNING" not in sql  # no id column
    assert translate("BEGIN IMMEDIATE") == ("BEGIN", False)
    assert translate("begin deferred")[0] == "BEGIN ISOLATION LEVEL REPEATABLE READ"
    assert translate("SELECT '50%'", False)[0] == "SELECT '50%'"  # no parameters: as written


def test_password_never_stored(tmp_path: Path) -> None:
    assert without_password("postgresql://ann:s3cret@db.example:5433/team?sslmode=require") == (
        "postgresql://ann@db.example:5433/team?sslmode=require"
    )
    assert without_password("postgresql://ann@db/team") == "postgresql://ann@db/team"


def test_bad_workspace_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / WORKSPACE_FILE).write_text("{not json")
    with pytest.raises(NotAWorkspace, match=rf"{WORKSPACE_FILE}: not a readable workspace file"):
        Workspace.open(tmp_path)
    (tmp_path / WORKSPACE_FILE).write_text(json.dumps({"database": "mysql://x/y"}))
    with pytest.raises(NotAWorkspace, match="must be a postgresql:// URL"):
        locate(tmp_path)
    with pytest.raises(WorkspaceError, match="give a postgresql://"):
        Workspace.create(tmp_path / "new", database="sqlite:///x")


def test_missing_postgresql_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(pg_server.glob, "glob", lambda pattern: [])
    assert pg_server.find_binaries() is None


def test_create_writes_the_file_and_the_folder_follows_it(
    tmp_path: Path, postgres_server: pg_server.PostgresServer, series_dir: Path
) -> None:
    url = postgres_server.database()
    with_password = url.replace("postgres@", "postgres:unused@")  # trust auth ignores it
    with Workspace.create(tmp_path / "team", database=with_password) as ws:
        assert ws.dialect == "postgresql" and isinstance(ws.blobs, DatabaseBlobStore)
        ws.import_paths([series_dir])
    stored = json.loads((tmp_path / "team" / WORKSPACE_FILE).read_text())
    assert stored == {"database": url}  # no password
    assert not (tmp_path / "team" / "medviewer.sqlite").exists()
    with Workspace.open(tmp_path / "team") as ws:
        assert len(ws.images()) == 3 and ws.where == url
        assert ws.db.execute("SELECT version FROM medviewer_schema").fetchone()[0] == (
            SCHEMA_VERSION
        )
    with Workspace.open(url) as ws:  # the URL alone opens the same database
        assert len(ws.images()) == 3
        assert locate(ws.root).database == url  # its local folder points at it (jobs)
        assert ws.root.parent == tmp_path / "user" / "servers"
    with pytest.raises(WorkspaceError, match="already a workspace file"):
        Workspace.create(tmp_path / "team", database=url)


def test_blobs_in_a_shared_folder_when_chosen(
    tmp_path: Path, postgres_server: pg_server.PostgresServer, series_dir: Path
) -> None:
    url = postgres_server.database()
    with Workspace.create(tmp_path / "team", database=url, blobs="folder") as ws:
        ws.import_paths([series_dir])
        rev = ws.revisions.save_mask(1, np.ones((32, 24), np.uint8), source="human", author="a")
        assert isinstance(ws.blobs, BlobStore) and pg_server.stored_blobs(ws) == 1
    with Workspace.open(url) as ws:  # found through the database, not the workspace file
        assert ws.revisions.read_mask(ws.revisions.get(rev.id)).sum() == 32 * 24


def test_damaged_blob_row_is_corrupt_blob(
    tmp_path: Path, postgres_url: str, series_dir: Path
) -> None:
    ws = Workspace.create(tmp_path / "team", database=postgres_url)
    ws.import_paths([series_dir])
    rev = ws.revisions.save_mask(1, np.ones((32, 24), np.uint8), source="human", author="a")
    ws.db.execute("UPDATE blob_data SET data = ? WHERE digest = ?", (b"\x89PNG trunc", rev.blob))
    with pytest.raises(CorruptBlob, match=f"blob {rev.blob[:12]}: stored mask is damaged"):
        ws.revisions.read_mask(rev)
    ws.db.execute("DELETE FROM blob_data WHERE digest = ?", (rev.blob,))
    with pytest.raises(CorruptBlob, match="stored mask missing"):
        ws.revisions.read_mask(rev)
    ws.close()


def test_other_database_and_newer_schema_refused(
    tmp_path: Path, postgres_server: pg_server.PostgresServer
) -> None:
    url = postgres_server.database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(NotAWorkspace, match="holds other tables"):
        Workspace.open(url)
    url = postgres_server.database()
    Workspace.open(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE medviewer_schema SET version = 99")
    with pytest.raises(SchemaTooNew, match="version 99 is newer"):
        Workspace.open(url)


def test_readonly_open_cannot_write(
    tmp_path: Path, postgres_server: pg_server.PostgresServer, series_dir: Path
) -> None:
    url = postgres_server.database()
    with pytest.raises(NotAWorkspace):
        Workspace.open(url, readonly=True)  # an empty database is not made a workspace
    with Workspace.open(url) as ws:
        ws.import_paths([series_dir])
    with Workspace.open(url, readonly=True) as ro:
        assert len(ro.images()) == 3
        with pytest.raises(SaveError, match="read-only transaction"):
            ro.revisions.set_status(1, "approved", author="x")


def test_unreachable_server_names_the_database(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    with pytest.raises(WorkspaceError, match="127.0.0.1:1/none.*cannot connect"):
        Workspace.open(url)


def test_cli_create_then_every_command_follows_the_folder(
    tmp_path: Path, postgres_url: str, series_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from medviewer.cli import main

    team = tmp_path / "team"
    assert main(["workspace", "create", str(team), "--database", postgres_url]) == 0
    assert f"created on {postgres_url}" in capsys.readouterr().out
    assert main(["import", str(series_dir), "--workspace", str(team)]) == 0
    assert main(["review", "1", "--approve", "--author", "dr", "--workspace", postgres_url]) == 0
    capsys.readouterr()
    assert main(["status", "--json", "--workspace", postgres_url]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["images"] == 3 and status["status"]["approved"] == 1
    assert main(["workspace", "create", str(team), "--database", postgres_url]) == 2
    assert "already a workspace file" in capsys.readouterr().err
