"""Content-addressed, losslessly compressed mask files, written atomically.

A mask blob is a PNG of the uint8 label map named by the SHA-256 of its shape and raw bytes,
so identical masks are stored once and a blob can be checked against its name on read.
Written by medviewer.atomic (temp file -> fsync -> rename -> fsync folder); only then may a row
point at it. Temp files live in `tmp/`, so a crash's leftovers are found and removed.

A blob no revision names is moved to `orphaned/`, not deleted, and deleted from there after
ORPHAN_DAYS: "unreferenced" is only as true as the database, and a database restored from an
older backup does not name the masks saved since. Read back through `get`, an orphan returns.

Other files a team shares (a model version's weights, `models.versions`) are kept by the same
stores, named by the SHA-256 of their bytes (`put_bytes`, `get_bytes`), in `files/` of a blob
folder (never taken for an orphan mask) or as rows of `blob_data`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from medviewer.atomic import atomic_write_bytes
from medviewer.processes import pid_alive
from medviewer.workspace.errors import CorruptBlob, SaveError

TMP_SUFFIX = ".tmp"
ORPHANS = "orphaned"
FILES = "files"  # shared files other than masks (model weights), by SHA-256
ORPHAN_DAYS = 30
# Label maps are long runs of one value: RLE without filtering encodes a 2048x2048 mask in
# ~8 ms (vs ~20 ms at plain level 1) and smaller; the file is still an ordinary PNG.
PNG_FLAGS = [
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
    cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE,
]  # fmt: skip


def mask_hash(mask: np.ndarray) -> str:
    h = hashlib.sha256(f"{mask.shape[0]}x{mask.shape[1]}:".encode())
    h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return h.hexdigest()


def _save_reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "disk full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "folder is read-only or not writable"
    return e.strerror or str(e)


class Blobs(Protocol):
    """Where masks are kept: files in a folder (`BlobStore`), or rows of a PostgreSQL
    workspace's database (`DatabaseBlobStore`), chosen when the workspace is created."""

    def put(self, mask: np.ndarray) -> str: ...

    def get(self, digest: str) -> np.ndarray: ...

    def put_bytes(self, data: bytes) -> str: ...

    def get_bytes(self, digest: str) -> bytes: ...

    def clean_leftovers(self, referenced: set[str], grace_seconds: float = 600) -> int: ...


def _checked(mask: np.ndarray) -> str:
    """The mask's hash; ValueError unless it is a 2D uint8 label map."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"a mask is a 2D uint8 label map, got {mask.dtype} {mask.shape}")
    return mask_hash(mask)


def _encoded(mask: np.ndarray, where: object) -> bytes:
    ok, encoded = cv2.imencode(".png", mask, PNG_FLAGS)
    if not ok:
        raise SaveError(f"{where}: the mask could not be encoded as PNG")
    return encoded.tobytes()


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (`bytes_digest` of them, read in blocks); None when it cannot
    be read."""
    try:
        with open(path, "rb") as fp:
            return hashlib.file_digest(fp, "sha256").hexdigest()
    except OSError:
        return None


def _verified(data: bytes, digest: str, where: object) -> bytes:
    if bytes_digest(data) != digest:
        raise CorruptBlob(f"{where}: stored file is damaged (content does not match its hash)")
    return data


def _decoded(data: np.ndarray, digest: str, where: object) -> np.ndarray:
    mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if mask is None or mask_hash(mask) != digest:
        raise CorruptBlob(f"{where}: stored mask is damaged (content does not match its hash)")
    return mask


class DatabaseBlobStore:
    """Masks as PNG bytes in the `blob_data` table of a PostgreSQL workspace: every client
    reads them without a shared folder. A blob commits before any revision names it."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection  # () -> this thread's connection

    def put(self, mask: np.ndarray) -> str:
        digest = _checked(mask)
        self._insert(digest, _encoded(mask, self._connection().where), "the mask")
        return digest

    def get(self, digest: str) -> np.ndarray:
        db = self._connection()
        row = db.execute("SELECT data FROM blob_data WHERE digest = ?", (digest,)).fetchone()
        where = f"{db.where} blob {digest[:12]}"
        if row is None:
            raise CorruptBlob(f"{where}: stored mask missing")
        return _decoded(np.frombuffer(bytes(row[0]), np.uint8), digest, where)

    def put_bytes(self, data: bytes) -> str:
        """Keep a file's bytes (committed now); returns their SHA-256."""
        digest = bytes_digest(data)
        self._insert(digest, data, "the file")
        return digest

    def _insert(self, digest: str, data: bytes, what: str) -> None:
        """One row per digest, committed now (the same bytes twice are one row)."""
        db = self._connection()
        try:
            db.execute(
                "INSERT INTO blob_data (digest, data, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (digest) DO NOTHING",
                (digest, data, time.time()),
            )
        except db.errors as e:
            raise SaveError(f"{db.where}: could not save {what} {digest[:12]}: {e}") from e

    def get_bytes(self, digest: str) -> bytes:
        """The bytes kept under `digest`; CorruptBlob if missing or altered."""
        db = self._connection()
        row = db.execute("SELECT data FROM blob_data WHERE digest = ?", (digest,)).fetchone()
        where = f"{db.where} blob {digest[:12]}"
        if row is None:
            raise CorruptBlob(f"{where}: stored file missing")
        return _verified(bytes(row[0]), digest, where)

    def clean_leftovers(self, referenced: set[str], grace_seconds: float = 600) -> int:
        """Nothing: a blob row is only written whole, and one no revision names costs only its
        bytes; never deleted, since other clients may be about to commit revisions naming it."""
        return 0


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.png"

    def orphan_path(self, digest: str) -> Path:
        return self.root / ORPHANS / f"{digest}.png"

    def file_path(self, digest: str) -> Path:
        return self.root / FILES / digest[:2] / digest

    def put_bytes(self, data: bytes) -> str:
        """Keep a file's bytes durably; returns their SHA-256. SaveError leaves nothing."""
        digest = bytes_digest(data)
        final = self.file_path(digest)
        if not final.exists():
            self._write(final, digest, data, "the file")
        return digest

    def get_bytes(self, digest: str) -> bytes:
        """The bytes kept under `digest`; CorruptBlob if missing or altered."""
        path = self.file_path(digest)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CorruptBlob(f"{path}: stored file missing or unreadable: {e.strerror}") from e
        return _verified(data, digest, path)

    def put(self, mask: np.ndarray) -> str:
        """Store a mask durably; return its hash. Raises SaveError and leaves nothing behind."""
        digest = _checked(mask)
        final = self.path(digest)
        if not final.exists():
            self._write(final, digest, _encoded(mask, final), "the mask")
        return digest

    def _write(self, final: Path, digest: str, data: bytes, what: str) -> None:
        """`data` at `final` through a temp file of this store: all or nothing (SaveError)."""
        tmp = self.tmp / f"{os.getpid()}-{digest[:16]}-{time.monotonic_ns()}{TMP_SUFFIX}"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            final.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(final, data, tmp=tmp)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise SaveError(f"{final}: could not save {what}: {_save_reason(e)}") from e

    def get(self, digest: str) -> np.ndarray:
        """The mask with that hash; raises CorruptBlob if it is missing or altered."""
        path = self.path(digest)
        orphan = self.orphan_path(digest)
        if not path.exists() and orphan.exists():  # a row names it again: take it back
            try:
                os.replace(orphan, path)
            except OSError:
                path = orphan  # a read-only workspace: read it where it is
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise CorruptBlob(f"{path}: stored mask missing or unreadable: {e.strerror}") from e
        return _decoded(data, digest, path)

    def clean_leftovers(self, referenced: set[str], grace_seconds: float = 600) -> int:
        """Delete temp files of dead writers; move blobs no revision names, older than the grace
        period, to `orphaned/`; delete orphans after ORPHAN_DAYS. Returns the files handled.

        The grace period protects a blob another process has renamed but not yet committed.
        """
        handled = 0
        now = time.time()
        if self.tmp.is_dir():
            for f in self.tmp.iterdir():
                pid = f.name.split("-", 1)[0]
                if (
                    not (pid.isdigit() and (int(pid) == os.getpid() or pid_alive(int(pid))))
                    or now - f.stat().st_mtime > 86400
                ):
                    f.unlink(missing_ok=True)
                    handled += 1
        for f in self.root.glob("??/*.png"):
            if f.stem not in referenced and now - f.stat().st_mtime > grace_seconds:
                dest = self.orphan_path(f.stem)
                dest.parent.mkdir(exist_ok=True)
                os.replace(f, dest)
                os.utime(dest)  # its days as an orphan count from now
                handled += 1
        for f in (self.root / ORPHANS).glob("*.png"):
            if now - f.stat().st_mtime > ORPHAN_DAYS * 86400:
                f.unlink(missing_ok=True)
                handled += 1
        return handled
