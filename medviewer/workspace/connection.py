"""Connections to the workspace database: read-write in WAL mode, or read-only without writing
anything, and a damaged file reported as DatabaseDamaged naming it, never a bare sqlite3 error.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from medviewer.workspace.errors import DatabaseDamaged, ReadOnlyWorkspace


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection any thread may close (each thread still uses its own)."""
    if readonly:
        conn = sqlite3.connect(
            _readonly_uri(path), uri=True, timeout=30, check_same_thread=False, factory=_Connection
        )
    else:
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False, factory=_Connection)
    conn.path = path
    try:
        if not readonly:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def writable(path: Path) -> bool:
    """May this process write the database and the files beside it?"""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def cannot_write(root: Path) -> ReadOnlyWorkspace:
    return ReadOnlyWorkspace(
        f"{root}: cannot write to this workspace (a read-only folder or no permission); "
        "it can only be read"
    )


def _readonly_uri(path: Path) -> str:
    """mode=ro still needs the WAL index (-shm) it shares with writers, and creates it when
    missing. Where it cannot (a read-only folder), no writer can be at work here either, so the
    file is read as immutable: unless a crash left changes in the -wal that the file lacks."""
    uri = path.resolve().as_uri()  # percent-encodes '?' and '#' in the path
    if Path(f"{path}-shm").exists() or writable(path):
        return f"{uri}?mode=ro"
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size:
        raise ReadOnlyWorkspace(
            f"{path.parent}: the folder is read-only and {wal.name} holds changes not yet in "
            f"{path.name}; open the workspace once where it can be written"
        )
    return f"{uri}?immutable=1"


def _damaged(e: sqlite3.DatabaseError) -> bool:
    name = getattr(e, "sqlite_errorname", "")  # Python 3.11+; the message before
    if name:
        return name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB"
    text = str(e)
    return "malformed" in text or "file is not a database" in text


def _checked(cursor: sqlite3.Cursor, e: sqlite3.DatabaseError) -> Exception:
    if not _damaged(e):
        return e
    path = cursor.connection.path  # type: ignore[attr-defined]
    return DatabaseDamaged(
        f"{path}: the workspace database is damaged ({e}); restore it from a backup"
    )


class _Cursor(sqlite3.Cursor):
    """SQLite finds damage on whichever page a step reads, so every step is checked: about
    0.3 us per row, small beside building the row's objects."""

    def execute(self, sql: str, parameters: Any = ()) -> _Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.DatabaseError as e:
            raise _checked(self, e) from e

    def executemany(self, sql: str, seq_of_parameters: Any) -> _Cursor:
        try:
            return super().executemany(sql, seq_of_parameters)
        except sqlite3.DatabaseError as e:
            raise _checked(self, e) from e

    def fetchone(self) -> Any:
        try:
            return super().fetchone()
        except sqlite3.DatabaseError as e:
            raise _checked(self, e) from e

    def fetchmany(self, size: int | None = None) -> list[Any]:
        try:
            return super().fetchmany(self.arraysize if size is None else size)
        except sqlite3.DatabaseError as e:
            raise _checked(self, e) from e

    def fetchall(self) -> list[Any]:
        try:
            return super().fetchall()
        except sqlite3.DatabaseError as e:
            raise _checked(self, e) from e

    def __next__(self) -> Any:
        try:
            return super().__next__()
        except sqlite3.DatabaseError as e:
            raise _checked(self, e) from e


class _Connection(sqlite3.Connection):
    """Hands out _Cursor for `execute` too (sqlite3's own execute bypasses `cursor()`). Shares
    `dialect`, `errors`, `where` and `lock` with `postgres.PgConnection`: the storage code runs
    on either."""

    dialect = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    path: Path

    @property
    def where(self) -> str:
        return str(self.path)

    def lock(self, key: str) -> None:
        """Nothing to do: a write transaction (BEGIN IMMEDIATE) holds SQLite's one write lock."""

    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = ()) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any) -> Any:
        return self.cursor().executemany(sql, seq_of_parameters)
