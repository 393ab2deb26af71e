"""A PostgreSQL connection that runs the workspace's SQLite-flavoured SQL: the one adapter
between the storage code (written once, `?` placeholders) and psycopg 3.

What it translates (`translate`): `?` -> `%s` (a literal `%` doubled), LIKE -> ILIKE (SQLite's
LIKE ignores ASCII case), an INSERT gains `RETURNING id` so `cursor.lastrowid` works, and the two
transaction kinds: SQLite's write transaction `BEGIN IMMEDIATE` (one writer at a time) becomes
READ COMMITTED, whose check-then-insert steps take `lock(key)` (a transaction advisory lock), and
the read snapshot `BEGIN DEFERRED` becomes REPEATABLE READ. Booleans are stored as integers, as
on SQLite. A refusal by the server (grants, row-level security) is PermissionDenied.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from medviewer.workspace.errors import PermissionDenied, WorkspaceError

DIALECT = "postgresql"
# Tables whose rows have an `id` the inserting code reads back (`lastrowid`).
_ID_TABLES = frozenset(
    {"patients", "studies", "series", "images", "revisions", "import_reports", "models", "jobs"}
)
_STATEMENTS = {
    "BEGIN IMMEDIATE": "BEGIN",
    "BEGIN DEFERRED": "BEGIN ISOLATION LEVEL REPEATABLE READ",
}
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def translate(sql: str, with_parameters: bool = True) -> tuple[str, bool]:
    """PostgreSQL's text of a workspace statement, and whether it returns the new row's id.
    Placeholders are only rewritten when parameters come with it (psycopg reads `%` only then).
    """
    fixed = _STATEMENTS.get(sql.strip().upper())
    if fixed is not None:
        return fixed, False
    out = sql
    if with_parameters:  # our SQL has no '?' inside literals
        out = out.replace("%", "%%").replace("?", "%s")
    out = re.sub(r"\bLIKE\b", "ILIKE", out)
    insert = _INSERT.match(out)
    returns_id = bool(
        insert and insert.group(1).lower() in _ID_TABLES and "RETURNING" not in out.upper()
    )
    if returns_id:
        out = out.rstrip().rstrip(";") + " RETURNING id"
    return out, returns_id


def _param(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _params(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: _param(v) for k, v in parameters.items()}
    return [_param(v) for v in parameters]


def lock_key(key: str) -> int:
    """A signed 64-bit advisory lock key for a text key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


class PgCursor:
    """What the storage code reads from a statement: rows, and `lastrowid` after an INSERT."""

    def __init__(self, cursor: psycopg.Cursor, returns_id: bool) -> None:
        self._cursor = cursor
        self.lastrowid: int | None = None
        if returns_id:
            row = cursor.fetchone()
            self.lastrowid = row[0] if row else None

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description else []

    def fetchmany(self, size: int = 1) -> list[Any]:
        return self._cursor.fetchmany(size) if self._cursor.description else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """One thread's connection (autocommit: explicit BEGIN/COMMIT only, as on SQLite)."""

    dialect = DIALECT
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, conn: psycopg.Connection, where: str) -> None:
        self._conn = conn
        self.where = where  # the URL without password, for messages

    @property
    def user(self) -> str:
        """The login the server knows this connection by (`current_user`)."""
        return self._conn.info.user

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    @property
    def raw(self) -> psycopg.Connection:
        """The psycopg connection (LISTEN/NOTIFY)."""
        return self._conn

    def execute(self, sql: str, parameters: Any = ()) -> PgCursor:
        text, returns_id = translate(sql, bool(parameters))
        try:
            cursor = self._conn.execute(text, _params(parameters) if parameters else None)
            return PgCursor(cursor, returns_id)
        except pg_errors.InsufficientPrivilege as e:
            raise PermissionDenied(
                f"{self.where}: the server refused {self.user}: {e.diag.message_primary or e}"
            ) from e

    def executemany(self, sql: str, seq_of_parameters: Sequence[Any]) -> None:
        for parameters in seq_of_parameters:
            self.execute(sql, parameters)

    def lock(self, key: str) -> None:
        """Serialise check-then-write steps on `key` until the transaction ends (SQLite's
        write transaction already holds the one write lock)."""
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(key),))

    def close(self) -> None:
        self._conn.close()


def connect(url: str, *, readonly: bool, where: str) -> PgConnection:
    """A connection to the workspace database; the password comes from libpq (PGPASSWORD,
    ~/.pgpass, a service file). Errors name `where` (the URL without password)."""
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="medviewer")
    except psycopg.Error as e:  # one line: libpq puts advice and other addresses on new lines
        reason = " ".join(str(e).split())
        raise WorkspaceError(f"{where}: cannot connect to the workspace database: {reason}") from e
    if readonly:
        conn.execute("SET default_transaction_read_only = on")
    return PgConnection(conn, where)
