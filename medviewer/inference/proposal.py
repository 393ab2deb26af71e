"""A model's proposal for one image: mask, labels, gate result, uncertainty; and saving it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medviewer.imaging.display import Image
from medviewer.inference.engine import Engine, RawOutput
from medviewer.inference.gate import GateResult, apply_gate
from medviewer.inference.postprocess import (
    changes_labels,
    clean,
    label_entropy,
    pixel_entropy,
    postprocess,
)
from medviewer.models.spec import Gate

if TYPE_CHECKING:
    from medviewer.models.spec import ModelSpec
    from medviewer.workspace import Workspace
    from medviewer.workspace.revisions import Revision


@dataclass
class Proposal:
    model: tuple[str, str]  # (name, version)
    mask: np.ndarray | None  # uint8 label map at native size; empty when gated out
    label_probs: dict[str, float]
    labels: dict[str, bool]
    gate: GateResult
    uncertainty: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the workspace stores with the revision (and the worklist sorts by)."""
        return {
            "finding": self.gate.finding,
            "probability": self.gate.probability,
            "uncertainty": self.uncertainty,
            "gate": self.gate.to_dict(),
            "probabilities": self.label_probs,
        }


def make_proposal(
    engine: Engine,
    raw: RawOutput,
    version: str,
    stage_one: float | None = None,
    *,
    gated: bool = True,
) -> Proposal:
    """The proposal from one image's output. The engine's label map, uncertainty and class
    counts (made on its device) are used when present; else they come from the float maps.
    `gated=False` (a clinician's clicks said where the finding is): the gate says only "finding"
    or not by the mask's area and never empties it."""
    spec = engine.spec if gated else replace(engine.spec, gate=Gate())
    labels = {k: p >= spec.label_threshold(k) for k, p in raw.label_probs.items()}
    if raw.labels is not None:
        mask = clean(raw.labels, spec)
    else:
        mask = postprocess(raw.probs, spec) if raw.probs is not None else None
    gate = apply_gate(spec, mask, raw.label_probs, stage_one)
    if mask is not None and not gate.finding:
        mask = np.zeros_like(mask)  # gated out: an empty mask, stored as such
    if raw.uncertainty is not None:
        uncertainty = raw.uncertainty
    elif raw.probs is not None:
        uncertainty = pixel_entropy(raw.probs)
    else:
        uncertainty = label_entropy(
            np.array(list(raw.label_probs.values())), spec.label_mode == "multilabel"
        )
    proposal = Proposal((spec.name, version), mask, raw.label_probs, labels, gate, uncertainty)
    if mask is not None:
        proposal.extra["class_pixels"] = _class_pixels(raw, mask, spec, gate.finding)
    return proposal


def _class_pixels(raw: RawOutput, mask: np.ndarray, spec: ModelSpec, finding: bool) -> list[int]:
    """Pixels of each class in the proposed mask: the device's counts where they still hold."""
    if raw.class_pixels is not None and finding and not changes_labels(spec):
        return [int(v) for v in raw.class_pixels]
    return np.bincount(mask.ravel(), minlength=spec.num_classes).tolist()


def gated_out(engine: Engine, image: Image, version: str, p: float) -> Proposal:
    """Two-stage: the classifier said no finding, so the segmenter does not run."""
    spec = engine.spec
    h, w = image.pixels.shape[:2]
    gate = apply_gate(spec, None, {}, stage_one=p)
    return Proposal((spec.name, version), np.zeros((h, w), np.uint8), {}, {}, gate, 0.0)


def propose(
    engine: Engine,
    images: list[Image],
    version: str,
    classifier: Engine | None = None,
) -> list[Proposal]:
    """Proposals for images; with a two-stage gate the classifier runs first."""
    gate = engine.spec.gate
    if gate.type != "two_stage":
        return [make_proposal(engine, raw, version) for raw in engine.run(images)]
    if classifier is None:
        raise ValueError(f"{engine.spec.name}: two-stage gate needs its classifier {gate.model}")
    stage_one = [
        raw.label_probs[gate.label or classifier.spec.labels[0]] for raw in classifier.run(images)
    ]
    positives = [i for i, p in enumerate(stage_one) if p >= gate.threshold]
    seg = dict(zip(positives, engine.run([images[i] for i in positives]), strict=True))
    return [
        make_proposal(engine, seg[i], version, stage_one[i]) if i in seg
        else gated_out(engine, images[i], version, stage_one[i])
        for i in range(len(images))
    ]  # fmt: skip


def save_proposal(ws: Workspace, image_id: int, proposal: Proposal) -> list[Revision]:
    """Store a proposal as `ai` revisions (mask and/or labels) with model name and version."""
    saved = []
    summary = proposal.summary()
    if proposal.mask is not None:
        saved.append(
            ws.revisions.save_mask(
                image_id,
                proposal.mask,
                source="ai",
                author=proposal.model[0],
                model=proposal.model,
                summary=summary,
            )
        )
    if proposal.labels:
        saved.append(
            ws.revisions.save_labels(
                image_id,
                proposal.labels,
                source="ai",
                author=proposal.model[0],
                model=proposal.model,
                summary=summary,
            )
        )
    return saved
