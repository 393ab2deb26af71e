"""The workspace: a folder with `medviewer.sqlite` (WAL) and a blob folder of masks, or a
folder whose `workspace.json` names a PostgreSQL database (`location`) for a team.

Studies are referenced in place, never copied. Every thread gets its own connection; SQLite
serialises writers, and WAL lets readers (a training process) see a consistent snapshot. The
same SQL runs on PostgreSQL through `postgres.PgConnection`: there is one code path above it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medviewer.imaging import Catalog, FrameRef, Instance, scan
from medviewer.imaging.records import FILE_KINDS
from medviewer.workspace.blobs import Blobs, BlobStore, DatabaseBlobStore, file_digest
from medviewer.workspace.connection import cannot_write, connect, writable
from medviewer.workspace.errors import (
    NotAWorkspace,
    PermissionDenied,
    SaveError,
    UnknownImage,
    WorkspaceError,
)
from medviewer.workspace.location import (
    BLOB_MODES,
    WORKSPACE_FILE,
    Location,
    locate,
    write_workspace_file,
)
from medviewer.workspace.lock import AppLock
from medviewer.workspace.schema import SCHEMA_VERSION, blob_storage, check, migrate

DB_NAME = "medviewer.sqlite"
# What a workspace keeps beside its database. Any of it next to a missing or empty database
# means the database was lost, not that the folder is new: a fresh database references none of
# the masks, and the blob clean-up would delete them all.
WORKSPACE_DATA = ("blobs", "models", "jobs", f"{DB_NAME}-wal")
# A connection of either store (`connection._Connection`, `postgres.PgConnection`).
Connection = Any


@dataclasses.dataclass(frozen=True)
class ImageRow:
    """One worklist row: an image with its place in the study tree and its review state."""

    id: int
    path: str
    frame: int
    rows: int
    columns: int
    patient_id: str
    patient_name: str
    study_uid: str
    study_description: str
    series_uid: str
    series_description: str
    modality: str
    position: int
    status: str
    status_author: str | None
    status_time: float | None
    ai_finding: bool | None
    ai_probability: float | None
    ai_uncertainty: float | None
    last_author: str | None
    last_time: float | None
    # Two clinicians saved masks of this image from the same start: both kept, for the reviewer.
    conflict: bool = False


@dataclasses.dataclass
class ImageQuery:
    """Worklist filter and order, e.g. unreviewed, AI says finding, most uncertain first."""

    status: Iterable[str] | None = None
    ai_finding: bool | None = None
    modality: str | None = None
    series_uid: str | None = None
    text: str | None = None  # matched against patient, study, series and path
    conflict: bool | None = None  # only images flagged (True) or not (False) as a conflict
    order: str = "study"  # study | uncertainty | probability | last_edited
    descending: bool = False
    limit: int | None = None


@dataclasses.dataclass
class ImportResult:
    catalog: Catalog
    added: int
    already: int


_ORDERS = {
    "study": "p.name, p.patient_id, st.date, st.uid, se.number, se.uid, i.position",
    "uncertainty": "i.ai_uncertainty IS NULL, i.ai_uncertainty",
    "probability": "i.ai_probability IS NULL, i.ai_probability",
    "last_edited": "i.last_time IS NULL, i.last_time",
}

_IMAGE_SELECT = """
SELECT i.id, i.path, i.frame, i.rows, i.columns, p.patient_id, p.name, st.uid, st.description,
       se.uid, se.description, se.modality, i.position, i.status, i.status_author,
       i.status_time, i.ai_finding, i.ai_probability, i.ai_uncertainty, i.last_author,
       i.last_time, i.conflict
FROM images i JOIN series se ON se.id = i.series JOIN studies st ON st.id = se.study
JOIN patients p ON p.id = st.patient
"""


def _row(r: tuple) -> ImageRow:
    values = list(r)
    values[16] = None if r[16] is None else bool(r[16])
    values[21] = bool(r[21])
    return ImageRow(*values)


def instance_to_json(inst: Instance) -> str:
    d = dataclasses.asdict(inst)
    d["path"] = str(inst.path)
    return json.dumps(d)


def instance_from_json(text: str) -> Instance:
    d = json.loads(text)
    d["path"] = Path(d["path"])
    for key in ("pixel_spacing", "position", "orientation", "frame_step", "voxel_order"):
        if d.get(key) is not None:
            d[key] = tuple(d[key])
    return Instance(**d)


class Workspace:
    """Open with `Workspace.open(folder or URL)`; use as a context manager or call `close()`."""

    def __init__(
        self,
        root: Path,
        *,
        app_lock: bool = False,
        readonly: bool = False,
        database: str | None = None,
    ) -> None:
        self.root = root
        self.readonly = readonly
        self.database = database  # a PostgreSQL URL without password; None: SQLite in root
        self.where = database or str(root / DB_NAME)  # the database, for messages
        self._url = database  # may hold a password (creation): connections only, never shown
        self.blobs: Blobs = BlobStore(root / "blobs")
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._conn_lock = threading.Lock()
        # One window per SQLite workspace; on a server, many clinicians at once (leases).
        self._lock = AppLock(root / "app.lock") if app_lock and database is None else None
        # Sub-stores share this workspace's connections; imported here to avoid a cycle.
        from medviewer.workspace.job_table import Jobs
        from medviewer.workspace.model_table import ModelVersions
        from medviewer.workspace.revisions import Revisions

        self.revisions = Revisions(self)
        self.models = ModelVersions(self)
        self.jobs = Jobs(self)

    @classmethod
    def open(cls, root: Path | str, *, app_lock: bool = False, readonly: bool = False) -> Workspace:
        """Open the workspace in `root` (a folder, or a postgresql:// URL); `app_lock` for the
        one GUI window of an SQLite workspace. A workspace is created only where there is none
        (never readonly); workspace data without its database is refused (NotAWorkspace), never
        started afresh. A folder with `workspace.json` opens the PostgreSQL database it names."""
        location = locate(root)
        if location.database is not None:
            return cls._open_server(location, readonly=readonly)
        root = location.root
        path = root / DB_NAME
        data = _workspace_data(root)
        if (not path.is_file() or path.stat().st_size == 0) and (data or readonly):
            raise _no_database(root, data, "missing" if not path.exists() else "empty")
        if not readonly:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WorkspaceError(f"{root}: cannot create the workspace: {e.strerror}") from e
            if not writable(path):
                raise cannot_write(root)
        ws = cls(root, app_lock=app_lock, readonly=readonly)
        try:
            if ws._lock is not None:
                ws._lock.acquire()
            version = check(ws.db, str(path))
            if version == 0 and (data or readonly):  # a database SQLite created, no tables
                raise _no_database(root, data, "without tables")
            if readonly and version < SCHEMA_VERSION:
                raise WorkspaceError(
                    f"{path}: written by an older medviewer; open it once for writing to upgrade"
                )
            if not readonly and migrate(ws.db, str(path)):
                # Only a database that already held this workspace knows which blobs it uses.
                ws.clean_leftovers()
        except BaseException:
            ws.close()
            raise
        return ws

    @classmethod
    def create(
        cls, root: Path | str, *, database: str | None = None, blobs: str = "database"
    ) -> Workspace:
        """A new workspace in the folder `root`: SQLite there, or on the PostgreSQL `database`
        (its URL; a password in it is used now, never stored), its masks kept in the database
        or in `root/blobs` (`blobs`: "database" or "folder", a folder every client mounts)."""
        root = Path(root).expanduser()
        if database is None:
            if (root / DB_NAME).exists() or (root / WORKSPACE_FILE).exists():
                raise WorkspaceError(f"{root}: already a workspace")
            return cls.open(root)
        if blobs not in BLOB_MODES:
            raise ValueError(f"blobs must be one of {', '.join(BLOB_MODES)}, not {blobs!r}")
        if (root / DB_NAME).exists():
            raise WorkspaceError(f"{root}: already an SQLite workspace ({DB_NAME})")
        write_workspace_file(root, database)
        folder = str((root / "blobs").resolve()) if blobs == "folder" else None
        try:
            ws = cls._open_server(Location(root, database), readonly=False, blobs=(blobs, folder))
        except BaseException:
            (root / WORKSPACE_FILE).unlink(missing_ok=True)
            raise
        try:
            from medviewer.workspace.roles import install

            install(ws)  # group roles, grants, row-level security: the server enforces them
        except BaseException:
            ws.close()
            (root / WORKSPACE_FILE).unlink(missing_ok=True)
            raise
        return ws

    @classmethod
    def _open_server(
        cls,
        location: Location,
        *,
        readonly: bool,
        blobs: tuple[str, str | None] = ("database", None),
    ) -> Workspace:
        """A PostgreSQL workspace: the schema made or upgraded on first open (never read-only).
        `location.database` may carry a password (creation); `where` never does."""
        from medviewer.workspace.location import without_password

        assert location.database is not None
        ws = cls(location.root, readonly=readonly, database=location.database)
        ws.where = ws.database = without_password(location.database)
        try:
            try:
                version = check(ws.db, ws.where)
            except PermissionDenied as e:  # a login the administrator never granted a role
                from medviewer.workspace.roles import ROLES

                raise PermissionDenied(
                    f"{ws.where}: {ws.db.user} may not open this workspace: it has no role here "
                    f"(the administrator runs `medviewer workspace grant {ws.db.user} --role "
                    f"{'|'.join(ROLES)}`)"
                ) from e
            if readonly and version == 0:
                raise NotAWorkspace(f"{ws.where}: no medviewer workspace in this database")
            if readonly and version < SCHEMA_VERSION:
                raise WorkspaceError(
                    f"{ws.where}: written by an older medviewer; open it once for writing to "
                    "upgrade"
                )
            if not readonly and version < SCHEMA_VERSION:
                try:
                    migrate(ws.db, ws.where, blobs=blobs[0], blob_folder=blobs[1])
                except PermissionDenied as e:  # only the tables' owner may alter them
                    raise PermissionDenied(
                        f"{ws.where}: written by an older medviewer (schema {version}); the "
                        f"administrator opens it once to upgrade it to schema {SCHEMA_VERSION}, "
                        f"then runs `medviewer workspace grant` again for each login ({e})"
                    ) from e
            mode, folder = blob_storage(ws.db)
            if mode == "database":
                ws.blobs = DatabaseBlobStore(lambda: ws.db)
            else:  # the shared folder named at creation
                ws.blobs = BlobStore(Path(folder or location.root / "blobs"))
        except BaseException:
            ws.close()
            raise
        return ws

    def acting_user(self, typed: str) -> str:
        """Who acts: on PostgreSQL the server login (`current_user`; a typed name does not
        count), on SQLite the name given."""
        return self.db.user if self.database is not None else typed

    @property
    def dialect(self) -> str:
        """Which store: "sqlite" or "postgresql" (for the few things only one has)."""
        return "sqlite" if self.database is None else "postgresql"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._conn_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
        if self._lock is not None:
            self._lock.release()

    @property
    def db(self) -> Connection:
        """This thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.database is not None:
                from medviewer.workspace.postgres import connect as connect_server

                conn = connect_server(self._url, readonly=self.readonly, where=self.where)
            else:
                path = self.root / DB_NAME
                try:
                    conn = connect(path, readonly=self.readonly)
                except sqlite3.Error as e:
                    raise WorkspaceError(f"{path}: cannot open the workspace database: {e}") from e
                conn.isolation_level = None  # explicit BEGIN/COMMIT only
            self._local.conn = conn
            with self._conn_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self, what: str = "save") -> Iterator[Connection]:
        """BEGIN IMMEDIATE ... COMMIT; any failure rolls back and raises SaveError, a refusal by
        the server PermissionDenied naming the login and what it may not do."""
        db = self.db
        try:
            if db.in_transaction:  # PostgreSQL would only warn, and commit the caller's work
                raise SaveError(f"{self.where}: could not {what}: a transaction is already open")
            db.execute("BEGIN IMMEDIATE")
        except db.errors as e:
            raise SaveError(f"{self.where}: could not {what}: {e}") from e
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as e:
            if db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                db.execute("ROLLBACK")
            if isinstance(e, PermissionDenied):
                raise PermissionDenied(
                    f"{self.where}: {db.user} may not {what} (the server refused: "
                    f"{e.__cause__ or e})"
                ) from e
            if isinstance(e, db.errors):
                raise SaveError(f"{self.where}: could not {what}: {e}") from e
            raise

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read transaction: everything read inside sees one consistent state."""
        db = self.db
        db.execute("BEGIN DEFERRED")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def clean_leftovers(self) -> int:
        referenced = {r[0] for r in self.db.execute("SELECT DISTINCT blob FROM revisions")}
        return self.blobs.clean_leftovers(referenced)

    # -- import ------------------------------------------------------------------------

    def import_paths(self, paths: Iterable[Path | str]) -> ImportResult:
        """Index studies in place (headers only) and keep the import report."""
        paths = [Path(p).resolve() for p in paths]
        catalog = scan(paths)
        return self.import_catalog(catalog, paths)

    def import_catalog(self, catalog: Catalog, paths: Iterable[Path] = ()) -> ImportResult:
        added = already = 0
        # Raster and NIfTI files of this import (by path): a row still pointing at one of them
        # was not moved, so no other file takes it over; `claimed`: rows repointed in this
        # import; `hashes`: each file's bytes hashed once, however many frames it has.
        importing = {
            str(ref.instance.path.resolve())
            for patient in catalog.patients
            for study in patient.studies
            for se in study.series
            for ref in se.frames
            if ref.instance.kind in FILE_KINDS
        }
        claimed: set[int] = set()
        hashes: dict[Path, str | None] = {}
        with self.transaction("import") as db:
            db.lock("import")  # the lookups below, then their inserts, one import at a time
            for patient in catalog.patients:
                pid = _upsert(
                    db,
                    "patients",
                    {"patient_id": patient.id, "name": patient.name},
                    ("patient_id", "name"),
                )
                for study in patient.studies:
                    sid = _upsert(
                        db,
                        "studies",
                        {
                            "patient": pid,
                            "uid": study.uid,
                            "description": study.description,
                            "date": study.date,
                        },
                        ("uid",),
                    )
                    for se in study.series:
                        seid = _upsert(
                            db,
                            "series",
                            {
                                "study": sid,
                                "uid": se.uid,
                                "modality": se.modality,
                                "description": se.description,
                                "number": se.number,
                                "sorted_by": se.sorted_by,
                            },
                            ("study", "uid"),
                        )
                        for position, ref in enumerate(se.frames):
                            if _put_image(db, seid, position, ref, importing, claimed, hashes):
                                added += 1
                            else:
                                already += 1
            db.execute(
                "INSERT INTO import_reports (created_at, paths, added, problems, skipped)"
                " VALUES (?,?,?,?,?)",
                (
                    time.time(),
                    json.dumps([str(p) for p in paths]),
                    added,
                    json.dumps([[str(p.path), p.reason] for p in catalog.problems]),
                    json.dumps([[str(p.path), p.reason] for p in catalog.skipped]),
                ),
            )
        return ImportResult(catalog, added, already)

    def import_reports(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, created_at, paths, added, problems, skipped FROM import_reports ORDER BY id"
        )
        return [
            {
                "id": r[0],
                "created_at": r[1],
                "paths": json.loads(r[2]),
                "added": r[3],
                "problems": json.loads(r[4]),
                "skipped": json.loads(r[5]),
            }
            for r in rows
        ]

    # -- images ------------------------------------------------------------------------

    def images(self, query: ImageQuery | None = None) -> list[ImageRow]:
        q = query or ImageQuery()
        where, args = [], []
        if q.status is not None:
            statuses = list(q.status)
            where.append(f"i.status IN ({','.join('?' * len(statuses))})")
            args += statuses
        if q.ai_finding is not None:
            where.append("i.ai_finding = ?")
            args.append(int(q.ai_finding))
        if q.conflict is not None:
            where.append("i.conflict = ?")
            args.append(int(q.conflict))
        if q.modality:
            where.append("se.modality = ?")
            args.append(q.modality)
        if q.series_uid:
            where.append("se.uid = ?")
            args.append(q.series_uid)
        if q.text:
            where.append(
                "(p.name LIKE ? OR p.patient_id LIKE ? OR st.description LIKE ?"
                " OR se.description LIKE ? OR i.path LIKE ?)"
            )
            args += [f"%{q.text}%"] * 5
        if q.order not in _ORDERS:
            raise ValueError(f"unknown order {q.order!r}; valid: {', '.join(_ORDERS)}")
        order = _ORDERS[q.order]
        if q.descending:
            order = ", ".join(
                part if part.endswith("IS NULL") else f"{part} DESC" for part in order.split(", ")
            )
        sql = _IMAGE_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {order}, i.id" + (f" LIMIT {int(q.limit)}" if q.limit else "")
        return [_row(r) for r in self.db.execute(sql, args)]

    def image(self, image_id: int) -> ImageRow:
        r = self.db.execute(_IMAGE_SELECT + " WHERE i.id = ?", (image_id,)).fetchone()
        if r is None:
            raise UnknownImage(f"{self.root}: no image with id {image_id}")
        return _row(r)

    def find_image(self, key: str) -> ImageRow:
        """An image by id, SOP Instance UID or file path (first frame)."""
        if key.isdigit():
            return self.image(int(key))
        r = self.db.execute(
            "SELECT id FROM images WHERE sop_instance_uid = ? OR path = ? ORDER BY frame LIMIT 1",
            (key, str(Path(key).resolve())),
        ).fetchone()
        if r is None:
            raise UnknownImage(f"{self.root}: no image {key!r} (give an id, a SOP UID or a path)")
        return self.image(r[0])

    def frame_refs(self, image_ids: Iterable[int] | None = None) -> dict[int, FrameRef]:
        """Image id -> FrameRef for every image (or those given), in one query."""
        rows = self.db.execute("SELECT id, instance, frame FROM images ORDER BY id")
        wanted = None if image_ids is None else set(image_ids)
        return {
            r[0]: FrameRef(instance_from_json(r[1]), r[2])
            for r in rows
            if wanted is None or r[0] in wanted
        }

    def image_id_of(self, ref: FrameRef) -> int:
        """The workspace id of a frame of an imported file."""
        row = self.db.execute(
            "SELECT id FROM images WHERE sop_instance_uid = ? AND frame = ?",
            (ref.instance.sop_instance_uid, ref.frame),
        ).fetchone()
        if row is None:
            raise UnknownImage(f"{ref.instance.path}: not an image of workspace {self.root}")
        return row[0]

    def frame_ref(self, image_id: int) -> FrameRef:
        """What the imaging package needs to load this image's pixels."""
        r = self.db.execute(
            "SELECT instance, frame FROM images WHERE id = ?", (image_id,)
        ).fetchone()
        if r is None:
            raise UnknownImage(f"{self.root}: no image with id {image_id}")
        return FrameRef(instance_from_json(r[0]), r[1])


def _workspace_data(root: Path) -> list[str]:
    """Which of WORKSPACE_DATA the folder holds (non-empty)."""
    found = []
    for name in WORKSPACE_DATA:
        p = root / name
        if (p.is_dir() and any(p.iterdir())) or (p.is_file() and p.stat().st_size):
            found.append(name)
    return found


def _no_database(root: Path, data: list[str], state: str) -> NotAWorkspace:
    if not data:
        return NotAWorkspace(f"{root}: no medviewer workspace here ({DB_NAME} is {state})")
    return NotAWorkspace(
        f"{root}: holds workspace data ({', '.join(data)}) but its database {DB_NAME} is "
        f"{state}; not starting a new workspace over it (its masks would count as unused): "
        f"restore {DB_NAME} from a backup"
    )


def _put_image(
    db: Connection,
    series: int,
    position: int,
    ref: FrameRef,
    importing: set[str],
    claimed: set[int],
    hashes: dict[Path, str | None],
) -> bool:
    """Insert an image row, or refresh where it lives; True when it is new. DICOM is keyed by
    SOP Instance UID and frame; a raster or NIfTI file (FILE_KINDS) by its path (and volume)
    and frame, else, moved or copied, by file name, size and bytes (`_moved_file`)."""
    inst = ref.instance
    path = str(inst.path.resolve())
    values = (series, position, path, instance_to_json(inst))
    found = db.execute(
        "SELECT id, content_hash FROM images WHERE sop_instance_uid = ? AND frame = ?",
        (inst.sop_instance_uid, ref.frame),
    ).fetchone()
    digest = None
    if inst.kind in FILE_KINDS and (found is None or found[1] is None):
        if inst.path not in hashes:
            hashes[inst.path] = file_digest(inst.path)  # None: unreadable, only ever added
        digest = hashes[inst.path]
        if found is None:
            moved = _moved_file(db, ref, digest, importing, claimed)
            found = None if moved is None else (moved, None)
    if found:
        # Re-importing a moved folder repoints the image; its revisions stay. A raster's or
        # NIfTI's UID is its path, so it moves with it.
        db.execute(
            "UPDATE images SET series=?, position=?, path=?, instance=?, sop_instance_uid=?,"
            " content_hash=COALESCE(?, content_hash) WHERE id=?",
            (*values, inst.sop_instance_uid, digest, found[0]),
        )
        claimed.add(found[0])
        return False
    db.execute(
        "INSERT INTO images (series, position, path, instance, frame, sop_instance_uid, rows,"
        " columns, content_hash) VALUES (?,?,?,?,?,?,?,?,?)",
        (*values, ref.frame, inst.sop_instance_uid, inst.rows, inst.columns, digest),
    )
    return True


def _moved_file(
    db: Connection,
    ref: FrameRef,
    digest: str | None,
    importing: set[str],
    claimed: set[int],
) -> int | None:
    """The row of this frame of a raster or NIfTI file (of its time point) imported before
    from another place (a moved or copied folder): same file name, size and bytes, its old
    path not part of this import and not taken over by another file of it. None when there is
    none, or no one best (several equal ones: the same parent folder name decides)."""
    inst = ref.instance
    if digest is None:
        return None
    candidates: list[tuple[int, Path]] = []
    name = os.sep + inst.path.name  # stored paths are resolved: compared as text, no pattern
    for image_id, old, stored, instance in db.execute(
        "SELECT id, path, content_hash, instance FROM images WHERE frame = ? AND rows = ?"
        " AND columns = ? AND (content_hash = ? OR content_hash IS NULL)"
        " AND substr(path, length(path) - ? + 1) = ?",
        (ref.frame, inst.rows, inst.columns, digest, len(name), name),
    ):
        old_path = Path(old)
        if image_id in claimed or old in importing:
            continue
        before = json.loads(instance)
        if before["kind"] != inst.kind or before.get("volume_index", 0) != inst.volume_index:
            continue
        if stored is None:
            # Imported before content was kept: only the old file, if still there, can tell.
            stored = file_digest(old_path)
            if stored is None:
                continue
            db.execute("UPDATE images SET content_hash = ? WHERE id = ?", (stored, image_id))
        if stored == digest:
            candidates.append((image_id, old_path))
    if len(candidates) > 1:
        candidates = [c for c in candidates if c[1].parent.name == inst.path.parent.name]
    return candidates[0][0] if len(candidates) == 1 else None


def _upsert(db: Connection, table: str, values: dict[str, Any], key: tuple[str, ...]) -> int:
    """Insert or update a row identified by `key`; return its id."""
    cols = list(values)
    updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in key)
    db.execute(
        f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})"
        f" ON CONFLICT ({','.join(key)}) DO " + (f"UPDATE SET {updates}" if updates else "NOTHING"),
        [values[c] for c in cols],
    )
    where = " AND ".join(f"{k} = ?" for k in key)
    return db.execute(f"SELECT id FROM {table} WHERE {where}", [values[k] for k in key]).fetchone()[
        0
    ]
