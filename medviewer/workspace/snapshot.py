"""The training set: a consistent snapshot of human-confirmed revisions.

Read in one transaction, so a training process sees the same set however much the clinician
saves meanwhile; the revision ids it used go into the manifest saved with the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medviewer.imaging import FrameRef
from medviewer.workspace.revisions import _COLUMNS, HUMAN_SOURCES, Revision, _revision

if TYPE_CHECKING:
    from medviewer.workspace.store import Workspace


@dataclass(frozen=True)
class TrainingItem:
    image_id: int
    frame: FrameRef
    status: str
    patient_id: str
    study_uid: str
    mask: Revision | None
    labels: Revision | None
    models: frozenset[str] = frozenset()  # named by the image's revisions (proposals, imports)

    @property
    def is_negative(self) -> bool:
        """Confirmed with no finding: an empty mask, or labels with nothing ticked."""
        if self.mask is not None:
            return set(self.mask.summary.get("pixels", {})) <= {"0"}
        return self.labels is not None and not any(self.labels.labels.values())


@dataclass(frozen=True)
class TrainingSnapshot:
    taken_at: float
    last_revision_id: int
    items: list[TrainingItem]
    unreviewed: int

    def for_model(self, name: str, workspace_models: set[str]) -> list[TrainingItem]:
        """The items model `name` learns from. A workspace can hold models for different tasks
        and a chest model must not learn from fundus photographs: beside other models, only
        images whose revisions name this one (its proposals and the corrections of them,
        ground truth imported for it); as the workspace's only model, every item."""
        if workspace_models <= {name}:
            return list(self.items)
        return [i for i in self.items if name in i.models]

    def manifest(self, items: list[TrainingItem] | None = None) -> dict[str, Any]:
        """What a run trained on (`items`, by default all) for the model's record."""
        return {
            "taken_at": self.taken_at,
            "last_revision_id": self.last_revision_id,
            "items": [
                {
                    "image": i.image_id,
                    "status": i.status,
                    "mask_revision": i.mask.id if i.mask else None,
                    "mask_blob": i.mask.blob if i.mask else None,
                    "labels_revision": i.labels.id if i.labels else None,
                    "negative": i.is_negative,
                }
                for i in (self.items if items is None else items)
            ],
        }


def training_snapshot(ws: Workspace) -> TrainingSnapshot:
    """Images a human confirmed (approved, or corrected and not rejected) with their revisions.

    Approving an image confirms what was on screen then: an approved image trains on its latest
    human revision, or on an AI proposal made before the approval (the accepted proposal). A
    proposal made after the approval (a newer model version) is not confirmed and never
    replaces the confirmed truth.
    """
    from medviewer.workspace.store import instance_from_json

    with ws.snapshot() as db:
        last = db.execute("SELECT coalesce(max(id), 0) FROM revisions").fetchone()[0]
        revs: dict[tuple[int, str], list[Revision]] = {}
        for row in db.execute(
            f"SELECT {_COLUMNS} FROM revisions WHERE kind IN ('mask', 'labels') ORDER BY id"
        ):
            rev = _revision(row)
            revs.setdefault((rev.image_id, rev.kind), []).append(rev)
        approved_at = dict(
            db.execute(
                "SELECT image, max(id) FROM revisions WHERE kind = 'status'"
                " AND json_extract(payload, '$.status') = 'approved' GROUP BY image"
            ).fetchall()
        )
        images = db.execute(
            "SELECT i.id, i.instance, i.frame, i.status, p.patient_id, st.uid FROM images i"
            " JOIN series se ON se.id = i.series JOIN studies st ON st.id = se.study"
            " JOIN patients p ON p.id = st.patient ORDER BY i.id"
        ).fetchall()
    items, unreviewed = [], 0
    for image_id, instance, frame, status, patient_id, study_uid in images:
        if status == "rejected":
            continue
        approval = approved_at.get(image_id, 0) if status == "approved" else 0
        picked = {
            kind: next(
                (
                    r
                    for r in reversed(revs.get((image_id, kind), []))
                    if r.source in HUMAN_SOURCES or r.id < approval
                ),
                None,
            )
            for kind in ("mask", "labels")
        }
        if status != "approved" and picked["mask"] is None and picked["labels"] is None:
            unreviewed += 1
            continue
        ref = FrameRef(instance_from_json(instance), frame)
        named = frozenset(
            r.model_name
            for kind in ("mask", "labels")
            for r in revs.get((image_id, kind), [])
            if r.model_name
        )
        items.append(
            TrainingItem(
                image_id, ref, status, patient_id, study_uid, picked["mask"], picked["labels"],
                named,
            )
        )  # fmt: skip
    return TrainingSnapshot(time.time(), last, items, unreviewed)
