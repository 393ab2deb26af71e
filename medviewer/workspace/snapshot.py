"""The training set: a consistent snapshot of human-confirmed revisions.

Read in one transaction, so a training process sees the same set however much the clinician
saves meanwhile; the revision ids it used go into the manifest saved with the model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medviewer.imaging import FrameRef
from medviewer.models.scope import why_not_applicable
from medviewer.workspace.revisions import _COLUMNS, Revision, _revision, confirmed_revision

if TYPE_CHECKING:
    from medviewer.models.spec import ModelSpec
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

    def for_model(self, spec: ModelSpec, workspace_models: set[str]) -> list[TrainingItem]:
        """The items model `spec` learns from: those it applies to (`why_not_applicable`, the
        rule inference uses too). A spec that declares no `applies_to` cannot tell a chest
        radiograph from a fundus photograph, so beside other models it learns only from images
        whose revisions name it (its proposals and their corrections, truth imported for it)."""
        items = [i for i in self.items if why_not_applicable(spec, i.frame.instance) is None]
        if spec.applies_to.declared or workspace_models <= {spec.name}:
            return items
        return [i for i in items if spec.name in i.models]

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
    """Images with confirmed truth (`confirmed_revision`, the one rule) with their revisions,
    and how many images still wait for a clinician."""
    from medviewer.workspace.store import instance_from_json

    with ws.snapshot() as db:
        last = db.execute("SELECT coalesce(max(id), 0) FROM revisions").fetchone()[0]
        revs: dict[tuple[int, str], list[Revision]] = {}
        for row in db.execute(f"SELECT {_COLUMNS} FROM revisions ORDER BY id"):
            rev = _revision(row)
            revs.setdefault((rev.image_id, rev.kind), []).append(rev)
        images = db.execute(
            "SELECT i.id, i.instance, i.frame, i.status, p.patient_id, st.uid FROM images i"
            " JOIN series se ON se.id = i.series JOIN studies st ON st.id = se.study"
            " JOIN patients p ON p.id = st.patient ORDER BY i.id"
        ).fetchall()
    items, unreviewed = [], 0
    for image_id, instance, frame, status, patient_id, study_uid in images:
        if status == "rejected":
            continue
        statuses = revs.get((image_id, "status"), [])
        approval = statuses[-1] if statuses else None
        picked = {}
        for kind in ("mask", "labels"):
            found = confirmed_revision(revs.get((image_id, kind), []), status, approval)
            picked[kind] = found.revision if found else None
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
