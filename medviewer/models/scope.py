"""Which model applies to which image: the one rule, read from each spec's `applies_to`.

`medviewer infer`, the inference runner, the app and the training scope all ask
`why_not_applicable`; a chest model never proposes on a brain MR or learns from a fundus photo.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from medviewer.imaging import Instance
from medviewer.models.spec import ModelSpec

if TYPE_CHECKING:
    from medviewer.workspace import Workspace


def why_not_applicable(spec: ModelSpec, inst: Instance) -> str | None:
    """Why model `spec` does not apply to this image, or None when it does."""
    scope = spec.applies_to
    if min(inst.rows, inst.columns) < scope.min_size:
        return (
            f"image is {inst.columns}x{inst.rows}; {spec.name} needs at least "
            f"{scope.min_size}x{scope.min_size}"
        )
    if scope.modalities and inst.modality.upper() not in scope.modalities:
        have = inst.modality or "unknown"
        return f"modality {have}; {spec.name} reads {', '.join(scope.modalities)}"
    if scope.body_parts and inst.body_part and inst.body_part not in scope.body_parts:
        return f"body part {inst.body_part}; {spec.name} reads {', '.join(scope.body_parts)}"
    colour = len(inst.shape) == 3  # as it decodes: palette colour becomes RGB
    if scope.colour != "any" and (scope.colour == "colour") != colour:
        have = "colour" if colour else "grey"
        return f"a {have} image; {spec.name} reads {scope.colour} images"
    pattern = scope.series_description
    if pattern and not re.search(pattern, inst.series_description, re.IGNORECASE):
        return f"series {inst.series_description!r} does not match {spec.name}'s {pattern!r}"
    return None


def applicable_images(
    ws: Workspace, spec: ModelSpec, image_ids: list[int] | None = None
) -> tuple[list[int], dict[int, str]]:
    """The images (all, or `image_ids`) the model applies to, and why not for the others."""
    refs = ws.frame_refs(image_ids)
    yes, no = [], {}
    for image_id, ref in refs.items():
        reason = why_not_applicable(spec, ref.instance)
        if reason is None:
            yes.append(image_id)
        else:
            no[image_id] = reason
    return yes, no
