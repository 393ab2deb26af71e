"""Run a model over every image of a workspace, resumably.

Each image's proposal is committed on its own (see InferenceRunner), so killing the run at any
point loses at most the images in flight; a rerun skips images that already have a proposal
from the same model name and version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medviewer.inference.runner import BATCH, InferenceRunner
from medviewer.models.spec import ModelSpec

if TYPE_CHECKING:
    from medviewer.workspace import Workspace


@dataclass
class BatchReport:
    model: str
    version: str
    proposed: int = 0
    skipped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)


def done_images(ws: Workspace, name: str, version: str, spec: ModelSpec) -> set[int]:
    """Images whose proposal from this model version is complete.

    save_proposal writes the mask first, then the labels (when the proposal has any), in two
    commits; an image killed between them has no labels yet and is run again."""
    kinds: dict[int, set[str]] = {}
    wants_labels: dict[int, bool] = {}
    rows = ws.db.execute(
        "SELECT image, kind, summary FROM revisions WHERE source = 'ai' AND model_name = ?"
        " AND model_version = ?",
        (name, version),
    )
    for image, kind, summary in rows:
        kinds.setdefault(image, set()).add(kind)
        if kind == "mask":
            wants_labels[image] = bool(json.loads(summary).get("probabilities"))
    done = set()
    for image, have in kinds.items():
        need = {"mask"} if spec.segments else {"labels"}
        if spec.segments and wants_labels.get(image):
            need.add("labels")
        if need <= have:
            done.add(image)
    return done


def active_models(ws: Workspace) -> list[str]:
    return sorted({m.name for m in ws.models.list() if m.active})


def run_batch(
    ws: Workspace,
    name: str,
    *,
    device: str = "auto",
    batch_size: int = 4,
    on_progress: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Propose for every image not yet done by the active version of `name`.

    Progress is reported on the calling thread, in image order. An interrupt (Ctrl-C) cancels
    what has not started and lets the image in flight finish and commit before it propagates.
    """
    with InferenceRunner(ws, device=device, batch_size=batch_size) as runner:
        version = runner.load(name)
        spec = runner.spec(name)
        done = done_images(ws, name, version, spec)
        images = [row.id for row in ws.images()]
        todo = [i for i in images if i not in done]
        report = BatchReport(name, version, skipped=len(images) - len(todo))
        futures = runner.submit_many(todo, BATCH, model=name)
        for k, (image_id, future) in enumerate(zip(todo, futures, strict=True), start=1):
            try:
                future.result()
            except Exception as e:  # noqa: BLE001 - one image's failure is reported, not fatal
                report.failed.append((image_id, str(e)))
            else:
                report.proposed += 1
            if on_progress is not None:
                on_progress(k, len(todo))
    return report
