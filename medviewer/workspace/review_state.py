"""What the viewer shows and edits for one image, read from and written to the workspace.

The clinician edits the latest mask (their own correction if there is one, else the AI's
proposal); the proposal stays beside it for comparison. Qt-free: the GUI calls these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from medviewer.workspace.classes import UNKNOWN, ClassResolver, Palette
from medviewer.workspace.revisions import AI_SOURCES, HUMAN_SOURCES, Confirmed, Revision

if TYPE_CHECKING:
    from medviewer.workspace.store import ImageRow, Workspace


@dataclass
class ReviewState:
    image: ImageRow
    mask: np.ndarray  # the label map to edit (a writable copy; zeros when nothing exists yet)
    mask_revision: Revision | None
    proposal: np.ndarray | None  # the AI's latest mask
    proposal_revision: Revision | None
    labels: dict[str, bool]  # the labels to show ticked
    ai_labels: Revision | None  # probabilities and gate live in its summary
    palette: Palette
    confirmed: Confirmed | None = None  # the mask truth as export and training see it

    @property
    def truth(self) -> str:
        """For the status bar: whose mask counts as confirmed truth, if anyone's."""
        if self.confirmed is None:
            return "mask not confirmed"
        what = "AI proposal" if self.confirmed.revision.source in AI_SOURCES else "mask"
        return f"{what} confirmed by {self.confirmed.by}"

    @property
    def probabilities(self) -> dict[str, float]:
        source = self.ai_labels or self.proposal_revision
        return dict(source.summary.get("probabilities", {})) if source else {}

    @property
    def gate(self) -> dict[str, Any] | None:
        source = self.proposal_revision or self.ai_labels
        return source.summary.get("gate") if source else None

    @property
    def edited_by_human(self) -> bool:
        return self.mask_revision is not None and self.mask_revision.source in HUMAN_SOURCES


def load_review(ws: Workspace, image_id: int, resolver: ClassResolver | None = None) -> ReviewState:
    """Everything the viewer needs for one image, read in one go."""
    image = ws.image(image_id)
    revs = ws.revisions
    latest = revs.latest(image_id, "mask")
    proposal_rev = revs.original(image_id, "mask")
    mask = (
        revs.read_mask(latest).copy() if latest else np.zeros((image.rows, image.columns), np.uint8)
    )
    proposal = None
    if proposal_rev is not None:
        proposal = (
            mask.copy() if latest and latest.id == proposal_rev.id else revs.read_mask(proposal_rev)
        )
    labels_rev = revs.latest(image_id, "labels")
    resolver = resolver or ClassResolver(ws)
    palette = resolver.palette(latest or proposal_rev) if (latest or proposal_rev) else UNKNOWN
    return ReviewState(
        image=image,
        mask=mask,
        mask_revision=latest,
        proposal=proposal,
        proposal_revision=proposal_rev,
        labels=dict(labels_rev.labels) if labels_rev else {},
        ai_labels=revs.original(image_id, "labels"),
        palette=palette,
        confirmed=revs.confirmed(image_id, "mask"),
    )


def save_mask_edit(
    ws: Workspace,
    state: ReviewState,
    mask: np.ndarray,
    author: str,
    summary: dict[str, Any] | None = None,
) -> Revision:
    """Store the clinician's mask as a `human` revision (a child of what they edited);
    `summary` says how it was made, e.g. the AI click tool's clicks and model."""
    rev = ws.revisions.save_mask(
        state.image.id,
        mask,
        source="human",
        author=author,
        summary=summary,
        parent_id=state.mask_revision.id if state.mask_revision else None,
        checked=True,  # another clinician's save since then: both kept, flagged a conflict
    )
    state.mask_revision = rev
    return rev


def save_mask_edits(
    ws: Workspace, edits: Sequence[tuple[ReviewState, np.ndarray]], author: str
) -> list[Revision]:
    """Store many images' masks (the slices one volume edit changed) as `human` revisions in
    one transaction: all of them or, on any failure, none (`Revisions.save_masks`)."""
    revs = ws.revisions.save_masks(
        [
            (state.image.id, mask, state.mask_revision.id if state.mask_revision else None)
            for state, mask in edits
        ],
        source="human",
        author=author,
        checked=True,
    )
    for (state, _), rev in zip(edits, revs):
        state.mask_revision = rev
    return revs


def save_labels_edit(
    ws: Workspace, state: ReviewState, labels: dict[str, bool], author: str
) -> Revision:
    rev = ws.revisions.save_labels(state.image.id, labels, source="human", author=author)
    state.labels = dict(labels)
    return rev
