"""The workspace's schema and its migrations, applied in order on open, for both stores:
written once in SQLite's dialect, with a small per-dialect table (`DIALECT_DDL`) for the column
types that differ and the steps only one store has (`DIALECT_STEPS`). SQLite keeps its version
in `PRAGMA user_version`; PostgreSQL in the one row of `medviewer_schema`, with where its mask
blobs live (chosen at creation)."""

from __future__ import annotations

import re
from typing import Any

from medviewer.workspace.errors import NotAWorkspace, SchemaTooNew

# Each entry upgrades the schema from version i to i+1. Never edit a released step: append one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE patients (
        id INTEGER PRIMARY KEY,
        patient_id TEXT NOT NULL,
        name TEXT NOT NULL,
        UNIQUE (patient_id, name)
    );
    CREATE TABLE studies (
        id INTEGER PRIMARY KEY,
        patient INTEGER NOT NULL REFERENCES patients(id),
        uid TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        date TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        study INTEGER NOT NULL REFERENCES studies(id),
        uid TEXT NOT NULL,
        modality TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        number INTEGER,
        sorted_by TEXT NOT NULL DEFAULT 'path',
        UNIQUE (study, uid)
    );
    -- One row per displayable 2D image (a frame). Review state is kept here as well as in the
    -- revisions so that a worklist of 10,000 images lists and filters with one indexed query;
    -- it is updated in the same transaction as the revision that changes it.
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        series INTEGER NOT NULL REFERENCES series(id),
        position INTEGER NOT NULL,
        path TEXT NOT NULL,
        frame INTEGER NOT NULL DEFAULT 0,
        sop_instance_uid TEXT NOT NULL,
        rows INTEGER NOT NULL,
        columns INTEGER NOT NULL,
        instance TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'unreviewed',
        status_author TEXT,
        status_time REAL,
        ai_finding INTEGER,
        ai_probability REAL,
        ai_uncertainty REAL,
        last_author TEXT,
        last_time REAL,
        UNIQUE (sop_instance_uid, frame)
    );
    CREATE INDEX images_status ON images(status);
    CREATE INDEX images_series ON images(series, position);
    CREATE TABLE revisions (
        id INTEGER PRIMARY KEY,
        image INTEGER NOT NULL REFERENCES images(id),
        kind TEXT NOT NULL CHECK (kind IN ('mask', 'labels', 'status')),
        source TEXT NOT NULL CHECK (source IN ('ai', 'human', 'import', 'ai-propagated')),
        author TEXT NOT NULL,
        model_name TEXT,
        model_version TEXT,
        created_at REAL NOT NULL,
        parent INTEGER REFERENCES revisions(id),
        blob TEXT,
        payload TEXT NOT NULL DEFAULT '{}',
        summary TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX revisions_image ON revisions(image, kind, id);
    CREATE TABLE import_reports (
        id INTEGER PRIMARY KEY,
        created_at REAL NOT NULL,
        paths TEXT NOT NULL,
        added INTEGER NOT NULL,
        problems TEXT NOT NULL,
        skipped TEXT NOT NULL
    );
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        path TEXT NOT NULL DEFAULT '',
        spec TEXT NOT NULL DEFAULT '{}',
        metrics TEXT NOT NULL DEFAULT '{}',
        active INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        activated_at REAL,
        UNIQUE (name, version)
    );
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        model_name TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        pid INTEGER,
        progress TEXT NOT NULL DEFAULT '{}',
        message TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: a raster file's identity across moves. Its UID is its path (imaging.raster), so a moved
    # folder would otherwise be new images without their revisions; the SHA-256 of its bytes
    # recognises it (store._moved_file). NULL for DICOM, whose SOP Instance UID travels.
    """
    ALTER TABLE images ADD COLUMN content_hash TEXT;
    CREATE INDEX images_content ON images(content_hash) WHERE content_hash IS NOT NULL;
    """,
    # 3: many clinicians at once (`leases`, `revisions`). Who has an image open (one row per
    # client, kept alive by heartbeats, gone when it expires) and the flag a concurrent edit of
    # the same image sets for the reviewer (both revisions stay).
    """
    ALTER TABLE images ADD COLUMN conflict INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX images_conflict ON images(conflict) WHERE conflict = 1;
    CREATE TABLE leases (
        image INTEGER NOT NULL REFERENCES images(id),
        client TEXT NOT NULL,
        holder TEXT NOT NULL,
        since REAL NOT NULL,
        heartbeat REAL NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (image, client)
    );
    """,
    # 4: the ruler and ROI measurements of an image, a revision kind of their own
    # (`revisions.Revisions.save_measurements`). Only the CHECK on `revisions.kind` changes,
    # which each dialect alters its own way (DIALECT_STEPS).
    "-- revisions.kind may be 'measurements'\n",
    # 5: a model version's files by SHA-256 (JSON: file name -> digest), kept in the blob store
    # on PostgreSQL so that any client can fetch the weights a worker registered
    # (`models.versions`); '{}' where they live only in the version folder (SQLite).
    "ALTER TABLE models ADD COLUMN files TEXT NOT NULL DEFAULT '{}';\n",
]
SCHEMA_VERSION = len(MIGRATIONS)

# Rewrites of the SQLite DDL for another dialect. PostgreSQL's REAL is 4 bytes (a timestamp
# would lose minutes); INTEGER PRIMARY KEY is SQLite's rowid, an identity column there.
DIALECT_DDL: dict[str, tuple[tuple[str, str], ...]] = {
    "sqlite": (),
    "postgresql": (
        (r"\bINTEGER PRIMARY KEY\b", "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
        (r"\bREAL\b", "DOUBLE PRECISION"),
    ),
}
# Steps only one dialect has, run after MIGRATIONS[i - 1] (key i: the version it makes).
DIALECT_STEPS: dict[str, dict[int, str]] = {
    "sqlite": {
        # SQLite alters no CHECK: the table is rebuilt (renamed first, so the parent references
        # of the copied rows stay valid under PRAGMA foreign_keys), its index made again.
        4: """
        ALTER TABLE revisions RENAME TO revisions_before_4;
        CREATE TABLE revisions (
            id INTEGER PRIMARY KEY,
            image INTEGER NOT NULL REFERENCES images(id),
            kind TEXT NOT NULL CHECK (kind IN ('mask', 'labels', 'status', 'measurements')),
            source TEXT NOT NULL CHECK (source IN ('ai', 'human', 'import', 'ai-propagated')),
            author TEXT NOT NULL,
            model_name TEXT,
            model_version TEXT,
            created_at REAL NOT NULL,
            parent INTEGER REFERENCES revisions(id),
            blob TEXT,
            payload TEXT NOT NULL DEFAULT '{}',
            summary TEXT NOT NULL DEFAULT '{}'
        );
        INSERT INTO revisions SELECT * FROM revisions_before_4;
        DROP TABLE revisions_before_4;
        CREATE INDEX revisions_image ON revisions(image, kind, id);
        """,
    },
    "postgresql": {
        # Mask blobs in the database (`blobs.DatabaseBlobStore`), when chosen at creation.
        1: """
        CREATE TABLE blob_data (
            digest TEXT PRIMARY KEY,
            data BYTEA NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        """,
        # Each committed revision wakes the other clients (`changes.ChangeFeed`): its image id.
        3: """
        CREATE FUNCTION medviewer_notify_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('medviewer_revisions', NEW.image::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER revisions_notify AFTER INSERT ON revisions
            FOR EACH ROW EXECUTE FUNCTION medviewer_notify_revision();
        """,
        4: """
        ALTER TABLE revisions DROP CONSTRAINT revisions_kind_check;
        ALTER TABLE revisions ADD CONSTRAINT revisions_kind_check
            CHECK (kind IN ('mask', 'labels', 'status', 'measurements'));
        """,
    },
}


def step_sql(step: int, dialect: str) -> str:
    """The DDL that brings a database of `dialect` from version `step` to `step + 1`."""
    sql = MIGRATIONS[step]
    for pattern, replacement in DIALECT_DDL[dialect]:
        sql = re.sub(pattern, replacement, sql)
    return sql + DIALECT_STEPS[dialect].get(step + 1, "")


def check(db: Any, path: str) -> int:
    """The schema version of a workspace database (0: no schema yet). Raises SchemaTooNew,
    or NotAWorkspace for a database of something else."""
    version = _version(db)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: workspace schema version {version} is newer than this medviewer "
            f"understands ({SCHEMA_VERSION}); update medviewer to open it"
        )
    if version == 0 and _has_tables(db):
        raise NotAWorkspace(f"{path}: not a medviewer workspace database (it holds other tables)")
    return version


def _version(db: Any) -> int:
    if db.dialect == "sqlite":
        return db.execute("PRAGMA user_version").fetchone()[0]
    if db.execute("SELECT to_regclass('medviewer_schema')").fetchone()[0] is None:
        return 0
    return db.execute("SELECT version FROM medviewer_schema").fetchone()[0]


def _has_tables(db: Any) -> bool:
    if db.dialect == "sqlite":
        return bool(db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
    return bool(
        db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()[
            0
        ]
    )


def migrate(db: Any, path: str, *, blobs: str = "database", blob_folder: str | None = None) -> int:
    """Bring the database to SCHEMA_VERSION; return the version it had before. `blobs` and
    `blob_folder`: where a new PostgreSQL workspace keeps its masks."""
    if db.dialect == "sqlite":
        version = check(db, path)
        for step in range(version, SCHEMA_VERSION):
            # executescript commits first; BEGIN makes each step all-or-nothing.
            db.executescript(
                f"BEGIN; {step_sql(step, 'sqlite')}; PRAGMA user_version = {step + 1}; COMMIT;"
            )
        return version
    db.execute("BEGIN")
    try:
        db.lock("medviewer schema")  # two clients opening a new database at once
        version = check(db, path)
        if version == 0:
            db.execute(
                "CREATE TABLE medviewer_schema (version INTEGER NOT NULL, blobs TEXT NOT NULL,"
                " blob_folder TEXT)"
            )
            db.execute("INSERT INTO medviewer_schema VALUES (0, ?, ?)", (blobs, blob_folder))
        for step in range(version, SCHEMA_VERSION):
            db.execute(step_sql(step, "postgresql"))
        db.execute("UPDATE medviewer_schema SET version = ?", (SCHEMA_VERSION,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return version


def blob_storage(db: Any) -> tuple[str, str | None]:
    """Where a PostgreSQL workspace keeps its masks: ("database", None) or ("folder", path)."""
    row = db.execute("SELECT blobs, blob_folder FROM medviewer_schema").fetchone()
    return row[0], row[1]
