"""Run a model over every image of a workspace it applies to, resumably.

Each image's proposal is committed on its own (see InferenceRunner), so killing the run at any
point loses at most the images in flight; a rerun skips images that already have a proposal
from the same model name and version. Images outside the model's `applies_to` are counted as
not applicable, never run (`medviewer.models.scope`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from medviewer.inference.runner import BATCH, InferenceRunner
from medviewer.models.scope import applicable_images
from medviewer.models.spec import ModelSpec

if TYPE_CHECKING:
    from medviewer.workspace import Workspace


@dataclass
class BatchReport:
    model: str
    version: str
    proposed: int = 0
    skipped: int = 0  # already proposed by this version
    not_applicable: int = 0  # outside the model's applies_to
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    backend: str = ""  # what ran the model and why, e.g. "onnxruntime (calibrated: ...)"


def done_images(ws: Workspace, name: str, version: str, spec: ModelSpec) -> set[int]:
    """Images whose proposal from this model version is complete.

    save_proposal writes the mask first, then the labels (when the proposal has any), in two
    commits; an image killed between them has no labels yet and is run again."""
    done = set()
    for image, kinds in ws.revisions.proposals_by(name, version).items():
        need = {"mask"} if spec.segments else {"labels"}
        if spec.segments and "mask" in kinds and kinds["mask"].get("probabilities"):
            need.add("labels")
        if need <= set(kinds):
            done.add(image)
    return done


def active_models(ws: Workspace) -> list[str]:
    return sorted(ws.models.active_versions())


def run_batch(
    ws: Workspace,
    name: str,
    *,
    device: str = "auto",
    batch_size: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    backend: str | None = None,
) -> BatchReport:
    """Propose for every image `name` applies to that its active version has not done yet.

    Progress is reported on the calling thread, in image order. An interrupt (Ctrl-C) cancels
    what has not started and lets the image in flight finish and commit before it propagates.
    """
    runner = InferenceRunner(ws, device=device, batch_size=batch_size, backend=backend)
    with runner:
        version = runner.load(name)
        spec = runner.spec(name)
        done = done_images(ws, name, version, spec)
        images, outside = applicable_images(ws, spec)
        todo = [i for i in images if i not in done]
        report = BatchReport(
            name, version, skipped=len(images) - len(todo), not_applicable=len(outside)
        )
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
        report.backend = runner.backend_of(name)
    return report
