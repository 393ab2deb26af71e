"""Append-only revisions of an image's mask, labels and review status.

"Original" is the latest AI revision; "confirmed" is the truth a clinician stands behind (see
`confirmed_revision`, the one rule). Neither replaces the other and the whole history stays. A
mask blob is durable on disk before its row commits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from medviewer.workspace.errors import MaskMismatch

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace

KINDS = ("mask", "labels", "status", "measurements")
SOURCES = ("ai", "human", "import", "ai-propagated")
STATUSES = ("unreviewed", "in_progress", "approved", "rejected")
HUMAN_SOURCES = ("human", "import")
REVIEW_DECISIONS = ("approved", "rejected")  # a reviewer's; they also settle a conflict
AI_SOURCES = ("ai", "ai-propagated")


@dataclass(frozen=True)
class Revision:
    id: int
    image_id: int
    kind: str
    source: str
    author: str
    model_name: str | None
    model_version: str | None
    created_at: float
    parent_id: int | None
    blob: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> dict[str, bool]:
        return self.payload.get("labels", {})

    @property
    def status(self) -> str | None:
        return self.payload.get("status")


@dataclass(frozen=True)
class Confirmed:
    """A revision a clinician stands behind, who confirmed it and when."""

    revision: Revision
    by: str
    at: float


def confirmed_revision(
    revisions: Sequence[Revision], status: str, approval: Revision | None
) -> Confirmed | None:
    """The one rule for confirmed truth, over one image's revisions of one kind (oldest first).

    A human or imported revision is confirmed by its author. Approving an image confirms what
    was on screen then: the latest revision older than the approval, an unedited AI proposal
    included, confirmed by the approver. A proposal made after the approval (a newer model
    version) is not confirmed and never replaces the confirmed truth. A rejected image has none.
    """
    if status == "rejected":
        return None
    approved = approval if status == "approved" else None
    for rev in reversed(revisions):
        if rev.source in HUMAN_SOURCES:
            return Confirmed(rev, rev.author, rev.created_at)
        if approved is not None and rev.id < approved.id:
            return Confirmed(rev, approved.author, approved.created_at)
    return None


_COLUMNS = (
    "id, image, kind, source, author, model_name, model_version, created_at, parent, blob,"
    " payload, summary"
)


def _revision(r: tuple) -> Revision:
    return Revision(*r[:10], payload=json.loads(r[10]), summary=json.loads(r[11]))


def mask_summary(mask: np.ndarray) -> dict[str, int]:
    """Pixel count per class present, keyed by class index as text (JSON keys)."""
    # np.bincount first widens every pixel to int64 (32 MB for 2048x2048); cv2.calcHist counts
    # uint8 directly. Its float32 counts are exact below 2^24, hence blocks of rows.
    counts = np.zeros(256, np.int64)
    rows = max(1, (1 << 24) // max(1, mask.shape[1]))
    for y in range(0, mask.shape[0], rows):
        block = np.ascontiguousarray(mask[y : y + rows], dtype=np.uint8)
        counts += cv2.calcHist([block], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return {str(k): int(n) for k, n in enumerate(counts) if n}


class Revisions:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # -- write -------------------------------------------------------------------------

    def save_mask(
        self,
        image_id: int,
        mask: np.ndarray,
        *,
        source: str,
        author: str,
        model: tuple[str, str] | None = None,
        summary: dict[str, Any] | None = None,
        parent_id: int | None = None,
        num_classes: int | None = None,
        checked: bool = False,
    ) -> Revision:
        """Store a uint8 label map at the image's native size as a new revision; an AI
        proposal is stored once per model version (see `_insert`). `checked`: `parent_id` is
        the revision the editor started from (None: an image without mask), and a human or
        imported mask saved since by someone else flags the image a conflict (`_parent_of`)."""
        mask = self._checked_mask(image_id, mask, num_classes)
        digest = self.ws.blobs.put(mask)  # durable before the row exists
        full_summary = {"pixels": mask_summary(mask), **(summary or {})}
        return self._insert(
            image_id, "mask", source, author, model, parent_id, digest, {}, full_summary,
            checked=checked,
        )  # fmt: skip

    def save_masks(
        self,
        masks: Sequence[tuple[int, np.ndarray, int | None]],
        *,
        source: str,
        author: str,
        checked: bool = False,
    ) -> list[Revision]:
        """Many images' masks, each (image id, mask, parent revision id or None for the
        latest), as revisions that land together (the slices one volume edit changed): every
        mask is checked and every blob durable first, then all rows commit in one transaction
        or none does. Human or imported masks only (an AI proposal is `save_mask`'s).
        `checked` as for `save_mask`: each parent is where the editor started."""
        if source in AI_SOURCES:
            raise ValueError(f"save_masks stores human or imported masks, not {source!r}")
        _check_source(source, author)
        masks_in = [(i, self._checked_mask(i, m, None), parent) for i, m, parent in masks]
        digests = [self.ws.blobs.put(mask) for _, mask, _ in masks_in]  # durable before rows
        now = time.time()
        saved: list[Revision] = []
        with self.ws.transaction(f"save the masks of {len(masks_in)} images") as db:
            for image_id in sorted({i for i, _, _ in masks_in}):  # one order: no deadlock
                db.lock(f"image {image_id}")
            for (image_id, mask, parent_id), digest in zip(masks_in, digests):
                parent_id, conflict = _parent_of(db, image_id, "mask", parent_id, checked, source)
                rev = Revision(
                    0, image_id, "mask", source, author, None, None, now, parent_id, digest,
                    {}, {"pixels": mask_summary(mask)},
                )  # fmt: skip
                saved.append(_insert_row(db, rev, conflict))
        return saved

    def _checked_mask(self, image_id: int, mask: np.ndarray, num_classes: int | None) -> np.ndarray:
        """The mask as uint8 class indices at the image's native size, or MaskMismatch."""
        image = self.ws.image(image_id)
        if mask.ndim != 2 or mask.shape != (image.rows, image.columns):
            raise MaskMismatch(
                f"{image.path}: mask is {_size(mask.shape)}, the image is "
                f"{image.columns}x{image.rows}"
            )
        if mask.dtype != np.uint8:
            if mask.size and (mask.min() < 0 or mask.max() > 255):
                raise MaskMismatch(f"{image.path}: mask values must be class indices 0-255")
            mask = mask.astype(np.uint8)
        if num_classes is not None and mask.size and int(mask.max()) >= num_classes:
            raise MaskMismatch(
                f"{image.path}: mask has class {int(mask.max())}, the model has only "
                f"{num_classes} classes (0-{num_classes - 1})"
            )
        return mask

    def save_labels(
        self,
        image_id: int,
        labels: dict[str, bool],
        *,
        source: str,
        author: str,
        model: tuple[str, str] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> Revision:
        """Per-image labels (name -> present); AI revisions add probabilities in `summary`."""
        self.ws.image(image_id)
        payload = {"labels": {str(k): bool(v) for k, v in labels.items()}}
        return self._insert(
            image_id, "labels", source, author, model, None, None, payload, summary or {}
        )

    def save_measurements(
        self, image_id: int, measurements: list[dict[str, Any]], *, author: str
    ) -> Revision:
        """The image's ruler and ROI measurements as they stand now, the whole list (records
        of `workspace.measurements`): the latest such revision is what the image shows."""
        self.ws.image(image_id)
        payload = {"measurements": list(measurements)}
        return self._insert(
            image_id, "measurements", "human", author, None, None, None, payload, {}
        )

    def set_status(self, image_id: int, status: str, *, author: str) -> Revision:
        if status not in STATUSES:
            raise ValueError(f"unknown review status {status!r}; valid: {', '.join(STATUSES)}")
        self.ws.image(image_id)
        return self._insert(
            image_id, "status", "human", author, None, None, None, {"status": status}, {}
        )

    def _insert(
        self,
        image_id: int,
        kind: str,
        source: str,
        author: str,
        model: tuple[str, str] | None,
        parent_id: int | None,
        blob: str | None,
        payload: dict[str, Any],
        summary: dict[str, Any],
        *,
        checked: bool = False,
    ) -> Revision:
        """One revision; `parent_id` None: the latest of its kind (read under the image's
        lock), unless `checked` (see `save_mask`)."""
        _check_source(source, author)
        name, version = model if model else (None, None)
        what = f"save the {kind} of image {image_id}"
        if kind == "status" and payload["status"] in REVIEW_DECISIONS:
            verb = {"approved": "approve", "rejected": "reject"}[payload["status"]]
            what = f"{verb} image {image_id}"
        with self.ws.transaction(what) as db:
            db.lock(f"image {image_id}")
            parent_id, conflict = _parent_of(db, image_id, kind, parent_id, checked, source)
            rev = Revision(
                0, image_id, kind, source, author, name, version, time.time(), parent_id, blob,
                payload, summary,
            )  # fmt: skip
            # One AI revision per (image, kind, model, version): two `infer` runs at once both
            # find the image undone; the check and the insert share one write lock, so the
            # second gets the first's revision back (its blob, if unused, is cleaned later).
            if source == "ai" and model is not None:
                found = db.execute(
                    f"SELECT {_COLUMNS} FROM revisions WHERE image = ? AND kind = ?"
                    " AND source = 'ai' AND model_name = ? AND model_version = ?"
                    " ORDER BY id LIMIT 1",
                    (image_id, kind, name, version),
                ).fetchone()
                if found is not None:
                    return _revision(found)
            return _insert_row(db, rev, conflict)

    # -- read --------------------------------------------------------------------------

    def get(self, revision_id: int) -> Revision:
        r = self.ws.db.execute(f"SELECT {_COLUMNS} FROM revisions WHERE id = ?", (revision_id,))
        row = r.fetchone()
        if row is None:
            raise KeyError(f"no revision {revision_id}")
        return _revision(row)

    def latest(
        self, image_id: int, kind: str, sources: tuple[str, ...] | None = None
    ) -> Revision | None:
        sql = f"SELECT {_COLUMNS} FROM revisions WHERE image = ? AND kind = ?"
        args: list[Any] = [image_id, kind]
        if sources:
            sql += f" AND source IN ({','.join('?' * len(sources))})"
            args += list(sources)
        row = self.ws.db.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return _revision(row) if row else None

    def original(self, image_id: int, kind: str = "mask") -> Revision | None:
        """The AI's latest proposal."""
        return self.latest(image_id, kind, AI_SOURCES)

    def confirmed(self, image_id: int, kind: str = "mask") -> Confirmed | None:
        """The confirmed truth of one kind for an image (see `confirmed_revision`)."""
        with self.ws.snapshot() as db:
            status = db.execute("SELECT status FROM images WHERE id = ?", (image_id,)).fetchone()
            if status is None:
                raise KeyError(f"no image {image_id}")
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM revisions WHERE image = ? AND kind = ? ORDER BY id",
                (image_id, kind),
            ).fetchall()
            approval = db.execute(
                f"SELECT {_COLUMNS} FROM revisions WHERE image = ? AND kind = 'status'"
                " ORDER BY id DESC LIMIT 1",
                (image_id,),
            ).fetchone()
        return confirmed_revision(
            [_revision(r) for r in rows], status[0], _revision(approval) if approval else None
        )

    def proposals_by(self, name: str, version: str) -> dict[int, dict[str, dict[str, Any]]]:
        """Image -> kind -> summary of the AI revisions of one model version."""
        out: dict[int, dict[str, dict[str, Any]]] = {}
        rows = self.ws.db.execute(
            "SELECT image, kind, summary FROM revisions WHERE source = 'ai' AND model_name = ?"
            " AND model_version = ?",
            (name, version),
        )
        for image, kind, summary in rows:
            out.setdefault(image, {})[kind] = json.loads(summary)
        return out

    def has_proposal(self, image_id: int, name: str, version: str) -> bool:
        row = self.ws.db.execute(
            "SELECT 1 FROM revisions WHERE image = ? AND source = 'ai' AND model_name = ?"
            " AND model_version = ? LIMIT 1",
            (image_id, name, version),
        ).fetchone()
        return row is not None

    def history(self, image_id: int) -> list[Revision]:
        rows = self.ws.db.execute(
            f"SELECT {_COLUMNS} FROM revisions WHERE image = ? ORDER BY id", (image_id,)
        )
        return [_revision(r) for r in rows]

    def read_mask(self, revision: Revision) -> np.ndarray:
        if revision.blob is None:
            raise ValueError(f"revision {revision.id} is a {revision.kind}, not a mask")
        return self.ws.blobs.get(revision.blob)

    def counts(self) -> dict[str, Any]:
        """Totals for `medviewer status`."""
        db = self.ws.db
        out: dict[str, Any] = {
            "images": db.execute("SELECT count(*) FROM images").fetchone()[0],
            "status": dict(
                db.execute("SELECT status, count(*) FROM images GROUP BY status").fetchall()
            ),
        }
        out["revisions"] = [
            {"kind": k, "source": s, "model": m, "version": v, "images": n, "revisions": c}
            for k, s, m, v, n, c in db.execute(
                "SELECT kind, source, model_name, model_version, count(DISTINCT image), count(*)"
                " FROM revisions GROUP BY kind, source, model_name, model_version"
                " ORDER BY kind, source, model_name, model_version"
            )
        ]
        return out


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" if len(shape) == 2 else "x".join(map(str, shape))


def _check_source(source: str, author: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown revision source {source!r}; valid: {', '.join(SOURCES)}")
    if not author:
        raise ValueError("every revision needs an author")


def _parent_of(
    db: Any, image_id: int, kind: str, parent_id: int | None, checked: bool, source: str
) -> tuple[int | None, bool | None]:
    """The parent to store and whether the save is a conflict (None: the flag stays as it
    is), read inside the caller's transaction under the image's lock. A checked human save
    conflicts when a human or imported mask newer than the revision it started from exists
    (another clinician saved meanwhile): both stay, and the image is flagged for the reviewer;
    a checked save from the newest such mask clears the flag. A later AI proposal is no
    conflict: it never replaces confirmed truth (`confirmed_revision`)."""
    if not checked:
        if parent_id is None:
            row = db.execute(
                "SELECT max(id) FROM revisions WHERE image = ? AND kind = ?", (image_id, kind)
            ).fetchone()
            parent_id = row[0] if row else None
        return parent_id, None
    if source not in HUMAN_SOURCES:
        return parent_id, None
    newer = db.execute(
        "SELECT count(*) FROM revisions WHERE image = ? AND kind = ? AND source IN (?, ?)"
        " AND id > ?",
        (image_id, kind, *HUMAN_SOURCES, parent_id or 0),
    ).fetchone()[0]
    return parent_id, newer > 0


def _insert_row(db: Any, rev: Revision, conflict: bool | None = None) -> Revision:
    """Insert one revision row inside the caller's transaction; the revision with its id.
    `conflict`: set (True) or clear (False) the image's conflict flag; None leaves it."""
    cur = db.execute(
        "INSERT INTO revisions (image, kind, source, author, model_name, model_version,"
        " created_at, parent, blob, payload, summary) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (*_row_values(rev), json.dumps(rev.payload), json.dumps(rev.summary)),
    )
    rev = replace(rev, id=cur.lastrowid)
    if db.dialect == "postgresql":  # the server may record the login instead (`roles`)
        author = db.execute("SELECT author FROM revisions WHERE id = ?", (rev.id,)).fetchone()
        rev = replace(rev, author=author[0])
    _update_image_state(db, rev)
    if rev.kind == "status" and rev.status in REVIEW_DECISIONS:
        conflict = False  # the reviewer has decided
    if conflict is not None:
        db.execute("UPDATE images SET conflict = ? WHERE id = ?", (int(conflict), rev.image_id))
    return rev


def _row_values(rev: Revision) -> tuple:
    """The revision's columns from image to blob, in table order."""
    return (
        rev.image_id, rev.kind, rev.source, rev.author, rev.model_name, rev.model_version,
        rev.created_at, rev.parent_id, rev.blob,
    )  # fmt: skip


def _update_image_state(db: Any, rev: Revision) -> None:
    """Keep the worklist columns of `images` in step with the revision just written."""
    image_id, kind, source, author, now = (
        rev.image_id, rev.kind, rev.source, rev.author, rev.created_at,
    )  # fmt: skip
    payload, summary = rev.payload, rev.summary
    if source in ("ai", "ai-propagated"):
        sets, args = [], []
        for column, key in (
            ("ai_finding", "finding"),
            ("ai_probability", "probability"),
            ("ai_uncertainty", "uncertainty"),
        ):
            if key in summary:
                sets.append(f"{column} = ?")
                args.append(summary[key])
        if sets:
            db.execute(f"UPDATE images SET {', '.join(sets)} WHERE id = ?", (*args, image_id))
        return
    if kind == "status":
        db.execute(
            "UPDATE images SET status = ?, status_author = ?, status_time = ?, last_author = ?,"
            " last_time = ? WHERE id = ?",
            (payload["status"], author, now, author, now, image_id),
        )
        return
    if kind == "measurements":
        return  # measuring reads the image; it neither edits nor reviews it
    # A human edit of an unreviewed image puts it in progress.
    db.execute(
        "UPDATE images SET last_author = ?, last_time = ?,"
        " status = CASE status WHEN 'unreviewed' THEN 'in_progress' ELSE status END"
        " WHERE id = ?",
        (author, now, image_id),
    )
