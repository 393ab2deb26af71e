"""The gate: is there a finding at all?

A segmenter trained on positives paints a few pixels on every negative image; the gate decides
"no finding" by a pixel count, the model's own classification head, or a separate classifier
(two-stage). A gated-out image gets an empty mask, stored as such, not hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from medviewer.models.spec import ModelSpec


@dataclass(frozen=True)
class GateResult:
    finding: bool
    probability: float | None  # the probability that decided, when one did
    rule: str  # none | pixel_count | classifier | two_stage
    detail: str  # what a clinician reads: "no finding: classifier 0.04"

    def to_dict(self) -> dict:
        return asdict(self)


def apply_gate(
    spec: ModelSpec,
    labels: np.ndarray | None,
    label_probs: dict[str, float],
    stage_one: float | None = None,
) -> GateResult:
    """Decide finding yes/no. `stage_one` is the separate classifier's probability (two_stage)."""
    gate = spec.gate
    area = int(np.count_nonzero(labels)) if labels is not None else 0
    if gate.type == "pixel_count":
        found = area >= gate.min_pixels
        sign = ">=" if found else "<"
        return GateResult(
            found, None, "pixel_count", f"{_word(found)}: {area} px {sign} {gate.min_pixels}"
        )
    if gate.type in ("classifier", "two_stage"):
        p = stage_one if gate.type == "two_stage" else label_probs.get(gate.label or "")
        if p is None:
            raise ValueError(f"gate {gate.type} needs the probability of {gate.label!r}")
        found = p >= gate.threshold
        who = "classifier" if gate.type == "classifier" else f"classifier {gate.model}"
        return GateResult(found, float(p), gate.type, f"{_word(found)}: {who} {p:.2f}")
    if spec.segments:
        return GateResult(area > 0, None, "none", f"{_word(area > 0)}: {area} px")
    ticked = [k for k, p in label_probs.items() if p >= spec.label_threshold(k)]
    best = max(label_probs.values(), default=None)
    return GateResult(
        bool(ticked), best, "none", f"{_word(bool(ticked))}: {', '.join(ticked) or 'no label'}"
    )


def _word(found: bool) -> str:
    return "finding" if found else "no finding"
