"""The workspace's SQLite schema and its migrations, applied in order on open."""

from __future__ import annotations

import sqlite3

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
]
SCHEMA_VERSION = len(MIGRATIONS)


def check(db: sqlite3.Connection, path: str) -> int:
    """The schema version of a workspace database (0: no schema yet). Raises SchemaTooNew,
    or NotAWorkspace for an SQLite database of something else."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path}: workspace schema version {version} is newer than this medviewer "
            f"understands ({SCHEMA_VERSION}); update medviewer to open it"
        )
    if version == 0 and db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise NotAWorkspace(f"{path}: not a medviewer workspace database (it holds other tables)")
    return version


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring the database to SCHEMA_VERSION; return the version it had before."""
    version = check(db, path)
    for step in range(version, SCHEMA_VERSION):
        # executescript commits first; BEGIN makes each step all-or-nothing.
        db.executescript(f"BEGIN; {MIGRATIONS[step]}; PRAGMA user_version = {step + 1}; COMMIT;")
    return version
